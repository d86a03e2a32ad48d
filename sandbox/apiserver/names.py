"""Object name validation, with the messages of k8s.io/apimachinery/pkg/util/validation.

Reads and writes nothing. Which rule applies to which resource follows the real registries:
namespaces are DNS labels, services DNS-1035 labels, RBAC objects and CSRs path segments (``system:node``,
``node-csr-<base64url>``), everything else DNS subdomains.
"""

from __future__ import annotations

import re
from typing import Any

from kubeboot.sandbox.apiserver import errors
from kubeboot.sandbox.apiserver.errors import FieldError

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = rf"{_LABEL}(\.{_LABEL})*"
_DNS1035 = "[a-z]([-a-z0-9]*[a-z0-9])?"

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 f"validation is '{_SUBDOMAIN}')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             f"validation is '{_LABEL}')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
               "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
               f"regex used for validation is '{_DNS1035}')")

PATH_SEGMENT = frozenset({
    "rbac.authorization.k8s.io/roles", "rbac.authorization.k8s.io/rolebindings",
    "rbac.authorization.k8s.io/clusterroles", "rbac.authorization.k8s.io/clusterrolebindings",
    "certificates.k8s.io/certificatesigningrequests",
})


def subdomain(name: str) -> list[str]:
    out = ["must be no more than 253 characters"] if len(name) > 253 else []
    return out if re.fullmatch(_SUBDOMAIN, name) else [*out, SUBDOMAIN_MSG]


def label(name: str, pattern: str = _LABEL, msg: str = LABEL_MSG) -> list[str]:
    out = ["must be no more than 63 characters"] if len(name) > 63 else []
    return out if re.fullmatch(pattern, name) else [*out, msg]


def path_segment(name: str) -> list[str]:
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def name_problems(resource: str, name: str) -> list[str]:
    if resource == "/namespaces":
        return label(name)
    if resource == "/services":
        return label(name, _DNS1035, DNS1035_MSG)
    if resource in PATH_SEGMENT:
        return path_segment(name)
    return subdomain(name)


def check_object(resource: str, obj: dict[str, Any]) -> None:
    """422 Invalid for a missing or malformed metadata.name / metadata.namespace."""
    meta = obj.get("metadata") or {}
    name, ns = meta.get("name") or "", meta.get("namespace") or ""
    errs: list[FieldError] = []
    if not name:
        errs.append(FieldError("metadata.name", "name or generateName is required", kind="Required value"))
    else:
        errs += [FieldError("metadata.name", p, name) for p in name_problems(resource, name)]
    if ns:
        errs += [FieldError("metadata.namespace", p, ns) for p in label(ns)]
    if errs:
        group, _ = errors.split(resource)
        raise errors.invalid(str(obj.get("kind", "")), group, name, errs)
