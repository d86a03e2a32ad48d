"""upload-config (spec 2.8): the cluster's configuration in ConfigMaps a joining node can read.

Reads: ``cfg`` (ClusterConfiguration, the user's KubeletConfiguration), the run secret
``kubelet-start.systemd-resolved``, the admin kubeconfig from the run's secrets.
Writes (create or update, unchanged objects are not written):
- ``kube-system/kubeadm-config``: key ``ClusterConfiguration`` = the v1beta4 ClusterConfiguration YAML as
  kubeadm marshals it (Go ``omitempty`` rules, sorted keys, the resolved ``kubernetesVersion``; no
  bootstrap tokens, nothing node-specific); Role + RoleBinding ``kubeadm:nodes-kubeadm-config``.
- ``kube-system/kubelet-config``: key ``kubelet`` = the cluster KubeletConfiguration (as kubelet-start
  writes it before patches) with annotation ``kubeadm.kubernetes.io/component-config.hash`` unless the
  user supplied the document; Role + RoleBinding ``kubeadm:kubelet-config``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from kubeboot.config import constants as c
from kubeboot.config.models import ClusterConfiguration
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import goyaml, kubeapi
from kubeboot.tasks import kubeletconfig as kc
from kubeboot.tasks.phases.context import ControlContext, PermanentError

Obj = dict[str, Any]
RBAC: Final = "rbac.authorization.k8s.io"

# Fields of the v1beta4 types without ``omitempty``: Go writes their zero value too.
_ALWAYS = frozenset({"dataDir", "endpoints", "caFile", "certFile", "keyFile"})
_ALWAYS_IN_ITEMS = {"extraArgs": frozenset({"name", "value"})}  # Arg{name, value} has no omitempty
_MAPS = frozenset({"featureGates"})  # Go maps (omitted when empty); every other object is a struct


# --- ConfigMap contents ------------------------------------------------------------------------------

def _go_fields(doc: Obj, always: frozenset[str] = _ALWAYS) -> Obj:
    """A struct's JSON as Go writes it: omitempty zero values dropped, non-pointer structs kept."""
    out: Obj = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            if key in _MAPS and not value:
                continue
            out[key] = value if key in _MAPS else _go_fields(value)
        elif isinstance(value, list):
            if value or key in always:
                item_keep = _ALWAYS_IN_ITEMS.get(key, _ALWAYS)
                out[key] = [_go_fields(v, item_keep) if isinstance(v, dict) else v for v in value]
        elif value is None or (value in ("", False, 0) and key not in always):
            continue
        else:
            out[key] = value
    return out


def cluster_configuration_doc(cluster: ClusterConfiguration, version: str) -> Obj:
    """The ClusterConfiguration kubeadm uploads: the model with the resolved version."""
    doc = _go_fields(cluster.model_dump(mode="json"))
    doc["kubernetesVersion"] = version
    return doc


def cluster_configuration_yaml(cfg: InitConfig) -> str:
    return goyaml.dump(cluster_configuration_doc(cfg.cluster, cfg.version.text))


def config_map_checksum(data: dict[str, str], binary_data: dict[str, bytes] | None = None) -> str:
    """kubeadm ChecksumForConfigMap: sha256 over the values in key order, data then binaryData."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(data[key].encode())
    for key in sorted(binary_data or {}):
        digest.update((binary_data or {})[key])
    return f"sha256:{digest.hexdigest()}"


def kubelet_config_yaml(cfg: InitConfig, resolved_active: bool) -> str:
    return kc.dump_yaml(kc.cluster_kubelet_config(cfg, resolved_active=resolved_active))


# --- objects -----------------------------------------------------------------------------------------

def config_map(name: str, namespace: str, data: dict[str, str], *, signed: bool = False) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace}
    if signed:
        meta["annotations"] = {c.COMPONENT_CONFIG_HASH_ANNOTATION: config_map_checksum(data)}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def get_config_map_role(name: str, namespace: str, config_map_name: str) -> Obj:
    """A Role allowing ``get`` on one ConfigMap."""
    return {
        "apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": {"name": name, "namespace": namespace},
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
                   "resourceNames": [config_map_name]}],
    }


def subject(kind: str, name: str) -> Obj:
    # kubeadm leaves apiGroup empty for Users and Groups; the API server defaults it to this.
    return {"kind": kind, "apiGroup": RBAC, "name": name}


def role_binding(name: str, namespace: str, role: str, subjects: list[Obj]) -> Obj:
    return {
        "apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": role},
        "subjects": subjects,
    }


def kubeadm_config_objects(cfg: InitConfig) -> list[Obj]:
    ns, name = c.NAMESPACE_SYSTEM, c.NODES_KUBEADM_CONFIG_ROLE
    return [
        config_map(c.KUBEADM_CONFIG_CONFIGMAP, ns, {c.CLUSTER_CONFIGURATION_KEY: cluster_configuration_yaml(cfg)}),
        get_config_map_role(name, ns, c.KUBEADM_CONFIG_CONFIGMAP),
        role_binding(name, ns, name, [subject("Group", c.DEFAULT_TOKEN_GROUP), subject("Group", c.NODES_GROUP)]),
    ]


def kubelet_config_objects(cfg: InitConfig, resolved_active: bool) -> list[Obj]:
    ns, name = c.NAMESPACE_SYSTEM, c.KUBELET_CONFIG_ROLE
    data = {c.KUBELET_CONFIG_KEY: kubelet_config_yaml(cfg, resolved_active)}
    # kubeadm signs only a config it generated; a user-supplied one is the user's to change.
    user_supplied = bool(cfg.kubelet)
    return [
        config_map(c.KUBELET_CONFIG_CONFIGMAP, ns, data, signed=not user_supplied),
        get_config_map_role(name, ns, c.KUBELET_CONFIG_CONFIGMAP),
        role_binding(name, ns, name, [subject("Group", c.NODES_GROUP), subject("Group", c.DEFAULT_TOKEN_GROUP)]),
    ]


# --- phases ------------------------------------------------------------------------------------------

def admin_client(ctx: ControlContext) -> Any:
    """The API client of the run's admin.conf (uploaded by the kubeconfig phase)."""
    data = ctx.kubeconfig(c.ADMIN_CONF)
    if not data:
        raise PermanentError(f"{c.ADMIN_CONF} is not in this run's secrets: run the kubeconfig phase first")
    return kubeapi.api_client(data)


def run_upload_config_kubeadm(ctx: ControlContext) -> None:
    ctx.log("upload-config", f'Storing the configuration used in ConfigMap "{c.KUBEADM_CONFIG_CONFIGMAP}" '
                             f'in the "{c.NAMESPACE_SYSTEM}" Namespace')
    api = admin_client(ctx)
    for obj in kubeadm_config_objects(ctx.cfg):
        kubeapi.ensure(api, obj)


def run_upload_config_kubelet(ctx: ControlContext) -> None:
    ctx.log("kubelet", f'Creating a ConfigMap "{c.KUBELET_CONFIG_CONFIGMAP}" in namespace {c.NAMESPACE_SYSTEM} '
                       "with the configuration for the kubelets in the cluster")
    resolved_active = ctx.secrets.get(c.SECRET_SYSTEMD_RESOLVED) == b"1"
    api = admin_client(ctx)
    for obj in kubelet_config_objects(ctx.cfg, resolved_active):
        kubeapi.ensure(api, obj)
