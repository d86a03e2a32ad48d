"""List filtering: ``labelSelector`` and ``fieldSelector``, as k8s.io/apimachinery/pkg/labels and fields parse them.

Reads and writes nothing. Label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``,
``k notin (a,b)``, joined by commas. Field selectors: ``f=v``, ``f==v``, ``f!=v`` over the fields each
resource supports (``metadata.name`` and ``metadata.namespace`` everywhere); any other field is a
400, as the real server answers "field label not supported".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubeboot.sandbox.apiserver import errors

Match = Callable[[dict[str, Any]], bool]

FIELDS: dict[str, tuple[str, ...]] = {
    "/secrets": ("type",),
    "/pods": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
              "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    "/events": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                "reason", "reportingComponent", "source", "type"),
    "/nodes": ("spec.unschedulable",),
    "/namespaces": ("status.phase",),
    "certificates.k8s.io/certificatesigningrequests": ("spec.signerName",),
}
_REQUIREMENT = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*)|\s+(in|notin)\s*"
                          r"\(([^)]*)\))?\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in selector:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> Match:
    m = _REQUIREMENT.match(text)
    if m is None or (m[1] and (m[3] or m[5])):
        raise errors.bad_request(f"unable to parse requirement: {text.strip()}")
    neg, key, op, value, set_op, values = m.groups()

    def labels(o: dict[str, Any]) -> dict[str, str]:
        return (o.get("metadata") or {}).get("labels") or {}

    if op in ("=", "=="):
        return lambda o: labels(o).get(key) == value
    if op == "!=":
        return lambda o: labels(o).get(key) != value
    if set_op:
        options = {v.strip() for v in values.split(",")}
        if set_op == "in":
            return lambda o: labels(o).get(key) in options
        return lambda o: labels(o).get(key) not in options
    if neg:
        return lambda o: key not in labels(o)
    return lambda o: key in labels(o)


def label_selector(selector: str) -> Match:
    reqs = [_requirement(p) for p in _split(selector)]
    return lambda o: all(r(o) for r in reqs)


def _field_value(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, bool):
        return str(node).lower()
    if path == "source" and isinstance(node, dict):  # events: source.component
        return str(node.get("component", ""))
    return "" if node is None else str(node)


def field_selector(resource: str, selector: str) -> Match:
    checks: list[Match] = []
    for part in _split(selector):
        m = re.match(r"^\s*([A-Za-z0-9._-]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if m is None:
            raise errors.bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        path, op, value = m.groups()
        if path not in ("metadata.name", "metadata.namespace", *FIELDS.get(resource, ())):
            raise errors.bad_request(f"unable to parse requirement: field label not supported: {path}")
        checks.append(_field_check(path, value, op != "!="))
    return lambda o: all(c(o) for c in checks)


def _field_check(path: str, value: str, equal: bool) -> Match:
    return lambda o: (_field_value(o, path) == value) == equal
