"""Strategic merge patch, as k8s.io/apimachinery/pkg/util/strategicpatch applies one (StrategicMergePatch).

Reads and writes nothing: pure functions over JSON-like values.

A schema says, per field, how lists merge: ``MergeList(key, items)`` for a list with
``patchStrategy:"merge"`` (items matched by ``key``, or a set union for a list of scalars when ``key``
is empty); a nested dict for a struct field; any field not listed is merged as a map when both sides
are maps and replaced otherwise — exactly what apimachinery does for a type without patch metadata.
``POD`` holds the merge lists of ``corev1.Pod`` (checked against the OpenAPI schema in the tests).

Directives: ``$patch: replace|delete`` (in a map and as a list element), ``$deleteFromPrimitiveList/<f>``,
``$retainKeys``. ``$setElementOrder/<f>`` lists (written by ``kubectl apply``, not by hand) are accepted
and ignored: the merged order is apimachinery's default order.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

DIRECTIVE = "$patch"
DELETE_FROM_PRIMITIVE = "$deleteFromPrimitiveList/"
SET_ELEMENT_ORDER = "$setElementOrder/"
RETAIN_KEYS = "$retainKeys"


class SMPError(ValueError):
    pass


@dataclass(frozen=True)
class MergeList:
    key: str  # patchMergeKey; "" for a list of scalars merged as a set
    items: dict[str, Any] = field(default_factory=dict)  # schema of each item


_CONTAINER = {
    "ports": MergeList("containerPort"),
    "env": MergeList("name"),
    "volumeMounts": MergeList("mountPath"),
    "volumeDevices": MergeList("devicePath"),
}
_OBJECT_META = {"finalizers": MergeList(""), "ownerReferences": MergeList("uid")}
POD: dict[str, Any] = {
    "metadata": _OBJECT_META,
    "spec": {
        "volumes": MergeList("name", {"ephemeral": {"volumeClaimTemplate": {"metadata": _OBJECT_META}}}),  # +retainKeys
        "initContainers": MergeList("name", _CONTAINER),
        "containers": MergeList("name", _CONTAINER),
        "ephemeralContainers": MergeList("name", _CONTAINER),
        "imagePullSecrets": MergeList("name"),
        "hostAliases": MergeList("ip"),
        "topologySpreadConstraints": MergeList("topologyKey"),
        "schedulingGates": MergeList("name"),
        "resourceClaims": MergeList("name"),  # merge,retainKeys
    },
    "status": {
        "conditions": MergeList("type"),
        "podIPs": MergeList("ip"),
        "hostIPs": MergeList("ip"),
        "resourceClaimStatuses": MergeList("name"),  # merge,retainKeys
    },
}


def strategic_merge(original: Any, patch: Any, schema: dict[str, Any]) -> Any:
    if patch is None:  # json.Unmarshal of "null" into a map: nothing to merge
        return copy.deepcopy(original)
    if not isinstance(patch, dict):
        raise SMPError(f"a strategic merge patch must be an object, not {type(patch).__name__}")
    base = copy.deepcopy(original) if isinstance(original, dict) else {}
    return merge_map(base, copy.deepcopy(patch), schema)


def merge_map(original: dict[str, Any], patch: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if DIRECTIVE in patch:
        return _map_directive(patch)
    retain = patch.pop(RETAIN_KEYS, None)
    if retain is not None:
        for k in [k for k in original if k not in retain]:
            del original[k]
    for k, value in patch.items():
        if k.startswith(SET_ELEMENT_ORDER):
            continue
        if k.startswith(DELETE_FROM_PRIMITIVE):
            name = k[len(DELETE_FROM_PRIMITIVE):]
            if isinstance(original.get(name), list):
                original[name] = [v for v in original[name] if v not in value]
        elif value is None:
            original.pop(k, None)
        else:
            original[k] = _merge_value(original.get(k), value, schema.get(k))
    return original


def _map_directive(patch: dict[str, Any]) -> dict[str, Any]:
    directive = patch.pop(DIRECTIVE)
    if directive == "replace":
        return patch
    if directive == "delete":
        return {}
    raise SMPError(f"unknown patch type: {directive!r} in map: {patch}")


def _merge_value(current: Any, value: Any, sub: Any) -> Any:
    if isinstance(current, dict) and isinstance(value, dict):
        return merge_map(current, value, sub if isinstance(sub, dict) else {})
    if isinstance(current, list) and isinstance(value, list) and isinstance(sub, MergeList):
        return merge_list(current, value, sub)
    return value


def merge_list(original: list[Any], patch: list[Any], meta: MergeList) -> list[Any]:
    if not original and not patch:
        return original
    kinds = {isinstance(v, dict) for v in original + patch}
    if len(kinds) > 1:
        raise SMPError("lists with mixed item types cannot be merged")
    if kinds == {False}:
        merged = _dedupe(original + patch)
        patch_items = [v for v in merged if v in patch]
        server_only = [v for v in merged if v not in patch]
        return _merge_sorted(server_only, _order_by(patch_items, patch, ""), original, "")
    if not meta.key:
        raise SMPError("cannot merge lists without merge key")
    original, patch, replace = _special_elements(original, patch, meta.key)
    if replace:
        return patch
    merged = list(original)
    for item in patch:
        if meta.key not in item:
            raise SMPError(f"map: {item} does not contain declared merge key: {meta.key}")
        at = _find(merged, meta.key, item[meta.key])
        if at is None:
            merged.append(item)
        else:
            merged[at] = merge_map(merged[at], item, meta.items)
    keys = [p[meta.key] for p in patch]
    patch_items = [v for v in merged if v.get(meta.key) in keys]
    server_only = [v for v in merged if v.get(meta.key) not in keys]
    return _merge_sorted(server_only, _order_by(patch_items, patch, meta.key), original, meta.key)


def _special_elements(original: list[Any], patch: list[Any], key: str) -> tuple[list[Any], list[Any], bool]:
    """mergeSliceWithSpecialElements: ``$patch`` elements of a list of maps."""
    plain, replace = [], False
    for item in patch:
        directive = item.get(DIRECTIVE)
        if directive is None:
            plain.append(item)
        elif directive == "delete":
            if key not in item:
                raise SMPError(f"map: {item} does not contain declared merge key: {key}")
            original = [o for o in original if o.get(key) != item[key]]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise SMPError("merging lists cannot yet be specified in the patch")
        else:
            raise SMPError(f"unknown patch type: {directive!r} in map: {item}")
    return original, plain, replace


def _dedupe(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _find(items: list[Any], key: str, value: Any) -> int | None:
    return next((i for i, v in enumerate(items) if v.get(key) == value), None)


def _index(order: list[Any], item: Any, key: str) -> int:
    for i, v in enumerate(order):
        if (v.get(key) == item.get(key)) if key else (v == item):
            return i
    return -1


def _order_by(items: list[Any], order: list[Any], key: str) -> list[Any]:
    return sorted(items, key=lambda v: _index(order, v, key))


def _merge_sorted(left: list[Any], right: list[Any], server_order: list[Any], key: str) -> list[Any]:
    """mergeSortedSlice: server-only items (left) interleaved into the patch items (right) by live order."""
    result, i, j = [], 0, 0
    while i < len(left) or j < len(right):
        if j >= len(right):
            result.append(left[i])
            i += 1
        elif i >= len(left):
            result.append(right[j])
            j += 1
        else:
            li, ri = _index(server_order, left[i], key), _index(server_order, right[j], key)
            if li >= 0 and ri >= 0 and li < ri:
                result.append(left[i])
                i += 1
            else:
                result.append(right[j])
                j += 1
    return result
