"""The three files kubeadm's kubelet-start writes, built as data (kubeadm-spec 2.6).

Reads: ``cfg`` (nodeRegistration, networking, certificatesDir, the user's KubeletConfiguration document,
patches directory), the node root's ``/etc/hostname`` and ``/run/systemd/resolve/resolv.conf``.
Writes: nothing itself; returns the bytes of

* ``/var/lib/kubelet/kubeadm-flags.env``: ``KUBELET_KUBEADM_ARGS="<sorted --flags>"`` (flags.go);
* ``/var/lib/kubelet/instance-config.yaml``: ``containerRuntimeEndpoint: "<criSocket>"`` — the exact
  one-line patch kubeadm's WriteInstanceConfigToDisk writes, without apiVersion/kind (NodeLocalCRISocket);
* ``/var/lib/kubelet/config.yaml``: the cluster KubeletConfiguration (kubeadm's defaulted struct, the same
  document as ConfigMap ``kubelet-config``), then the user's ``kubeletconfiguration`` patches, then the
  instance patch — in that order, as kubeadm's WriteConfigToDisk applies them, so the node's CRI socket
  wins over a patch.

YAML is serialised like sigs.k8s.io/yaml: keys sorted, lists not indented, "0"/"" double-quoted.
"""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubeboot.config import constants as c
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import goyaml
from kubeboot.tasks.fsutil import NodeFS

KUBELET_ENV_VAR = "KUBELET_KUBEADM_ARGS"
SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"
HOSTNAME_FILE = "/etc/hostname"
PATCH_TARGET = "kubeletconfiguration"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"

# Fields of kubelet's v1beta1 KubeletConfiguration that are not ``omitempty``: kubeadm marshals the Go
# struct, so these appear with their zero value in every config.yaml (checked against real v1.3x files).
_ZERO_VALUES: dict[str, Any] = {
    "authentication": {"anonymous": {}, "webhook": {"cacheTTL": "0s"}, "x509": {}},
    "authorization": {"webhook": {"cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s"}},
    "containerRuntimeEndpoint": "",
    "cpuManagerReconcilePeriod": "0s",
    "crashLoopBackOff": {},
    "evictionPressureTransitionPeriod": "0s",
    "fileCheckFrequency": "0s",
    "httpCheckFrequency": "0s",
    "imageMaximumGCAge": "0s",
    "imageMinimumGCAge": "0s",
    "logging": {
        "flushFrequency": 0,
        "options": {"json": {"infoBufferSize": "0"}, "text": {"infoBufferSize": "0"}},
        "verbosity": 0,
    },
    "memorySwap": {},
    "nodeStatusReportFrequency": "0s",
    "nodeStatusUpdateFrequency": "0s",
    "runtimeRequestTimeout": "0s",
    "shutdownGracePeriod": "0s",
    "shutdownGracePeriodCriticalPods": "0s",
    "streamingConnectionIdleTimeout": "0s",
    "syncFrequency": "0s",
    "volumeStatsAggPeriod": "0s",
}

Patcher = Callable[[str, dict[str, Any], Path, Callable[[str], None]], dict[str, Any]]


# --- the cluster KubeletConfiguration -------------------------------------------------------------


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid onto ``base``: maps merge key by key, anything else in ``over`` wins."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _unset(doc: dict[str, Any], key: str) -> bool:
    # Go's zero value: kubeadm's Default() cannot tell "" or a nil pointer from "not given".
    return doc.get(key) in (None, "")


def _fill(doc: dict[str, Any], key: str, value: Any) -> None:
    if _unset(doc, key):
        doc[key] = value


def systemd_resolved_active(fs: NodeFS) -> bool:
    """kubeadm asks systemd whether systemd-resolved is active; kubeboot looks for the resolv.conf it
    maintains on the node root, which is deterministic and works for simulated nodes."""
    return fs.exists(SYSTEMD_RESOLV_CONF)


def cluster_kubelet_config(cfg: InitConfig, *, resolved_active: bool) -> dict[str, Any]:
    """kubeadm's defaulted KubeletConfiguration (componentconfigs/kubelet.go ``Default``).

    User values win, as in kubeadm (which only warns about non-recommended ones), except
    ``rotateCertificates``, which kubeadm always forces to true.
    """
    doc = deep_merge(_ZERO_VALUES, {k: v for k, v in cfg.kubelet.items() if k not in ("apiVersion", "kind")})
    doc["apiVersion"] = c.KUBELET_CONFIG_API
    doc["kind"] = "KubeletConfiguration"
    _fill(doc, "staticPodPath", c.MANIFESTS_DIR)
    if doc.get("clusterDNS") is None:
        doc["clusterDNS"] = [cfg.dns_service_ip]
    _fill(doc, "clusterDomain", cfg.cluster.networking.dnsDomain)
    authn = doc["authentication"]
    _fill(authn["x509"], "clientCAFile", f"{cfg.pki_dir}/ca.crt")
    _fill(authn["anonymous"], "enabled", False)
    _fill(authn["webhook"], "enabled", True)
    _fill(doc["authorization"], "mode", "Webhook")
    _fill(doc, "healthzBindAddress", "127.0.0.1")
    _fill(doc, "healthzPort", c.KUBELET_HEALTHZ_PORT)
    doc["rotateCertificates"] = True
    _fill(doc, "cgroupDriver", "systemd")
    if resolved_active:
        _fill(doc, "resolvConf", SYSTEMD_RESOLV_CONF)
    if not doc.get("featureGates"):
        doc.pop("featureGates", None)  # an empty map is omitempty in the Go struct
    return doc


# --- config.yaml: cluster config + user patches + instance patch -----------------------------------


def node_kubelet_config(
    cluster_doc: dict[str, Any],
    cfg: InitConfig,
    out: Callable[[str], None],
    *,
    patcher: Patcher | None = None,
) -> dict[str, Any]:
    """What the node's config.yaml holds, printing kubeadm's ``[patches]`` lines on the way."""
    doc = copy.deepcopy(cluster_doc)
    if cfg.patches_dir:
        from kubeboot.tasks.patches import apply_patches

        doc = (patcher or apply_patches)(PATCH_TARGET, doc, Path(cfg.patches_dir), out)
    if cfg.profile.node_local_cri_socket:
        doc["containerRuntimeEndpoint"] = cfg.init.nodeRegistration.criSocket
        out(f'[patches] Applied patch of type "{STRATEGIC_MERGE}" to target "{PATCH_TARGET}"')
    return doc


def instance_config(cfg: InitConfig) -> str:
    """instance-config.yaml, byte for byte: ``fmt.Sprintf("containerRuntimeEndpoint: %q\\n", socket)``."""
    return f"containerRuntimeEndpoint: {go_quote(cfg.init.nodeRegistration.criSocket)}\n"


# --- kubeadm-flags.env --------------------------------------------------------------------------


def os_hostname(fs: NodeFS) -> str:
    """The node's hostname as kubeadm's GetHostname sees it (trimmed, lowercased).

    A node root's ``/etc/hostname`` speaks for the machine it represents (a simulated node has its
    own); without one the node is this machine and ``gethostname()`` answers.
    """
    text = fs.read_text(HOSTNAME_FILE)
    name = text.strip() if text else ""
    return (name or socket.gethostname()).strip().lower()


def kubelet_flags(cfg: InitConfig, hostname: str) -> list[str]:
    """The sorted ``--name=value`` list (kubeadm's buildKubeletArgs + ArgumentsToCommand)."""
    nr = cfg.init.nodeRegistration
    base: list[tuple[str, str]] = []
    if not cfg.profile.node_local_cri_socket:
        base.append(("container-runtime-endpoint", nr.criSocket))
    if cfg.profile.writes_pod_infra_image_flag:
        base.append(("pod-infra-container-image", cfg.pause_image))
    overrides = [(a.name, a.value) for a in nr.kubeletExtraArgs]
    # GetNodeNameAndHostname: a hostname-override in kubeletExtraArgs names the node too.
    node_name = next((v for n, v in reversed(overrides) if n == "hostname-override"), nr.name or hostname)
    if node_name != hostname:
        base.append(("hostname-override", node_name))
    overridden = {n for n, _ in overrides}
    args = overrides + [a for a in base if a[0] not in overridden]
    return [f"--{n}={v}" for n, v in sorted(args, key=lambda a: a[0])]


def flags_env(cfg: InitConfig, hostname: str) -> str:
    return f"{KUBELET_ENV_VAR}={go_quote(' '.join(kubelet_flags(cfg, hostname)))}\n"


# --- serialising ---------------------------------------------------------------------------------


def go_quote(text: str) -> str:
    """Go's ``%q`` for the printable text these files hold."""
    return json.dumps(text, ensure_ascii=False)


def dump_yaml(doc: dict[str, Any]) -> str:
    return goyaml.dump(doc)
