"""The ``KubeletConfiguration`` and ``KubeProxyConfiguration`` documents, checked against their Go types.

Reads: the raw documents of one config file. Writes: nothing; returns the documents to keep. kubeadm
decodes each component configuration twice (util/config: VerifyUnmarshalStrict, then the component's
decoder): the strict pass only warns, naming every unknown field ("error unmarshaling configuration
schema.GroupVersionKind{...}: strict decoding error: unknown field ..."), and the normal pass drops
those fields and fails on a value of the wrong type. kubeboot does the same with the Go types of
``config.kubelettypes`` / ``config.kubeproxytypes``: unknown fields are warned about and removed from
the document it keeps (so they never reach ``config.yaml`` or a ConfigMap), a wrong type is a
``ConfigError`` naming the field path. A document of another apiVersion of the group is refused, as
kubeadm refuses it ("you may have to do manual conversion").
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from kubeboot.config import constants as c
from kubeboot.config.errors import ConfigError, field_path
from kubeboot.config.gotypes import GO_TYPE_ERROR, GoStruct, json_kind
from kubeboot.config.kubelettypes import KubeletConfiguration
from kubeboot.config.kubeproxytypes import KubeProxyConfiguration

KUBELET = "KubeletConfiguration"
KUBEPROXY = "KubeProxyConfiguration"
_TYPES: dict[str, tuple[str, type[GoStruct]]] = {
    KUBELET: (c.KUBELET_CONFIG_API, KubeletConfiguration),
    KUBEPROXY: (c.KUBEPROXY_CONFIG_API, KubeProxyConfiguration),
}
_CONTAINER_KINDS = {"model_type": "struct", "model_attributes_type": "struct", "dict_type": "map", "list_type": "slice"}


def gvk(api_version: str, kind: str) -> str:
    """Go's %#v of a schema.GroupVersionKind, as kubeadm's warning prints it."""
    group, _, version = api_version.rpartition("/")
    return f'schema.GroupVersionKind{{Group:"{group}", Version:"{version}", Kind:"{kind}"}}'


def _type_message(err: ErrorDetails, kind: str) -> str:
    path = field_path(tuple(err["loc"]))
    if err["type"] == GO_TYPE_ERROR and "go" in err.get("ctx", {}):
        ctx = err["ctx"]
        return f"json: cannot unmarshal {ctx['json']} into Go struct field {kind}.{path} of type {ctx['go']}"
    if err["type"] in _CONTAINER_KINDS:
        expected = err.get("ctx", {}).get("class_name") or _CONTAINER_KINDS[err["type"]]
        return f"json: cannot unmarshal {json_kind(err['input'])} into Go struct field {kind}.{path} of type {expected}"
    return str(err["msg"])


def _document_order(node: Any, prefix: tuple[int | str, ...] = ()) -> list[tuple[int | str, ...]]:
    """Every path of a document in the order it was written (Go's decoder reports in that order)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    out: list[tuple[int | str, ...]] = []
    for key, value in items:
        out += [(*prefix, key), *_document_order(value, (*prefix, key))]
    return out


def _drop(doc: dict[str, Any], loc: tuple[int | str, ...]) -> None:
    node: Any = doc
    for part in loc[:-1]:
        node = node[part]
    node.pop(loc[-1], None)


def check_component_config(doc: dict[str, Any], kind: str, file: str, warnings: list[str]) -> dict[str, Any]:
    """The document as kubeadm would keep it; ``ConfigError`` for a wrong apiVersion or a wrong type."""
    api, model = _TYPES[kind]
    if doc.get("apiVersion") != api:
        raise ConfigError(
            f"unexpected apiVersion {doc.get('apiVersion')!r}, you may have to do manual conversion to {api!r}",
            file=file, document=kind, field="apiVersion",
        )
    try:
        model.model_validate(doc)
        return doc
    except ValidationError as e:
        errors = e.errors()
    extra = {tuple(err["loc"]) for err in errors if err["type"] == "extra_forbidden"}
    unknown = [loc for loc in _document_order(doc) if loc in extra]
    wrong = [err for err in errors if err["type"] != "extra_forbidden"]
    if wrong:
        raise ConfigError(_type_message(wrong[0], kind), file=file, document=kind,
                          field=field_path(tuple(wrong[0]["loc"])))
    fields = ", ".join(f'unknown field "{field_path(loc)}"' for loc in unknown)
    warnings.append(f"error unmarshaling configuration {gvk(api, kind)}: strict decoding error: {fields}")
    kept = copy.deepcopy(doc)
    for loc in unknown:
        _drop(kept, loc)
    return kept


def checked_component_configs(
    by_kind: dict[str, dict[str, Any]], file: str, warnings: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(KubeletConfiguration, KubeProxyConfiguration) to keep: ``{}`` for a document not given."""
    kept = [check_component_config(by_kind[k], k, file, warnings) if k in by_kind else {} for k in (KUBELET, KUBEPROXY)]
    return kept[0], kept[1]
