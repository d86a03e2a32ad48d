"""Where kube-apiserver keeps each object in etcd, and the continue tokens of paginated lists.

Reads and writes nothing. Keys are ``<--etcd-prefix>/<resource prefix>/[<namespace>/]<name>``
(genericregistry's NamespaceKeyFunc / NoNamespaceKeyFunc). The resource prefix is the plural, except the
historical names compiled into kube-apiserver (pkg/kubeapiserver/default_storage_factory_builder.go,
``SpecialDefaultResourcePrefixes``): Nodes live under ``minions``, Services under ``services/specs``,
Endpoints under ``services/endpoints``.

A continue token is what k8s.io/apiserver/pkg/storage/continue.go encodes: unpadded base64url of
``{"v":"meta.k8s.io/v1","rv":<revision>,"start":"<next key, relative to the list's key prefix>"}``, so a
token one API server wrote is read by another (or by a real kube-apiserver).
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath

DEFAULT_PREFIX = "/registry"
SPECIAL_PREFIXES = {  # store key (<group>/<plural>) -> resource prefix
    "/nodes": "minions",
    "/services": "services/specs",
    "/endpoints": "services/endpoints",
    "/replicationcontrollers": "controllers",
    "networking.k8s.io/ingresses": "ingress",
}
TOKEN_VERSION = "meta.k8s.io/v1"


class InvalidContinue(ValueError):
    """A token this server cannot read; the message is storage.DecodeContinue's."""


def resource_prefix(resource: str) -> str:
    """``resource`` is a store key, ``"<group>/<plural>"``."""
    return SPECIAL_PREFIXES.get(resource, resource.rpartition("/")[2])


def object_key(etcd_prefix: str, resource: str, namespace: str, name: str) -> str:
    base = f"{etcd_prefix.rstrip('/')}/{resource_prefix(resource)}"
    return f"{base}/{namespace}/{name}" if namespace else f"{base}/{name}"


def list_prefix(etcd_prefix: str, resource: str, namespace: str | None = None) -> str:
    """The key prefix of a list: every namespace's objects, or one namespace's (ends with ``/``)."""
    base = f"{etcd_prefix.rstrip('/')}/{resource_prefix(resource)}/"
    return f"{base}{namespace}/" if namespace else base


def encode_continue(next_key: str, key_prefix: str, revision: int) -> str:
    if not next_key.startswith(key_prefix) or next_key == key_prefix:
        raise ValueError(f"unable to encode next field: the key and key prefix do not match {key_prefix} {next_key}")
    token = {"v": TOKEN_VERSION, "rv": revision, "start": next_key[len(key_prefix):]}
    raw = json.dumps(token, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_continue(token: str, key_prefix: str) -> tuple[str, int]:
    """(the key to start from, the revision of the first page; -1 means "the latest")."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        doc = json.loads(raw)
    except (binascii.Error, ValueError) as e:
        raise InvalidContinue(f"continue key is not valid: {e}") from None
    if not isinstance(doc, dict) or doc.get("v") != TOKEN_VERSION:
        version = doc.get("v") if isinstance(doc, dict) else None
        raise InvalidContinue(f"continue key is not valid: server does not recognize this encoded version {version}")
    rv, start = doc.get("rv"), doc.get("start")
    if not isinstance(rv, int) or rv == 0:
        raise InvalidContinue("continue key is not valid: incorrect encoded start resourceVersion "
                              "(version meta.k8s.io/v1)")
    if not isinstance(start, str) or not start:
        raise InvalidContinue("continue key is not valid: encoded start key empty (version meta.k8s.io/v1)")
    # As the real decoder: a start key that path cleaning changes could reach above the list's prefix.
    key = start if start.startswith("/") else "/" + start
    cleaned = posixpath.normpath(key)
    if cleaned != key or key.startswith("//"):  # Go's path.Clean also folds a leading "//"
        raise InvalidContinue(f"continue key is not valid: {start}")
    return key_prefix + key[1:], rv
