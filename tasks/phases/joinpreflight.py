"""Phase ``preflight`` of a join (kubeadm cmd/phases/join/preflight.go, preflight.RunJoinNodeChecks).

Reads: the host (``HostFacts``), the node root, the cluster (discovery, ``kubeadm-config``: see
``joincluster``). Writes: the run secrets of discovery only.

Order as kubeadm: "[preflight] Running pre-flight checks", the join node checks, discovery and the
cluster's configuration, then for a control-plane join the cluster must have a controlPlaneEndpoint
and the shared certificates must come (``--certificate-key``) or be here, then the init checks of a
control-plane node. Files and ports this node holds from an earlier attempt of the same cluster
(kubeboot's node marker) are "Resuming", not errors, as for init. kubeboot pulls no images.
"""

from __future__ import annotations

from kubeboot.config import constants as c
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import preflight as pf
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.hostfacts import HostFacts
from kubeboot.tasks.phases.joincluster import ensure_cluster
from kubeboot.tasks.phases.joincontext import DISCOVERY_SINCE, JoinNodeContext
from kubeboot.tasks.phases.preflight import ignore_set, init_node_checks, root_checks

PHASE = "preflight"
SHARED_CERTS = ("ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-ca.key")
NOT_READY = """One or more conditions for hosting a new control plane instance is not satisfied.

{error}

Please ensure that:
* The cluster has a stable controlPlaneEndpoint address.
* The certificates that must be shared among control plane instances are provided.
"""


def join_node_checks(cfg: InitConfig, ca_cert_path: str) -> list[pf.Check]:
    """kubeadm's RunJoinNodeChecks, in its order."""
    return [
        pf.Check(pf.label("DirAvailable", c.MANIFESTS_DIR), pf.dir_available(c.MANIFESTS_DIR)),
        *(pf.Check(pf.label("FileAvailable", path), pf.file_available(path)) for path in (
            f"{c.KUBERNETES_DIR}/{c.KUBELET_CONF}", f"{c.KUBERNETES_DIR}/{c.BOOTSTRAP_KUBELET_CONF}", ca_cert_path)),
        pf.Check("CRI", pf.cri),
        pf.Check("Swap", pf.swap),
        *(pf.Check(f"FileExisting-{exe}", pf.in_path(exe, mandatory)) for exe, mandatory in pf.EXECUTABLES),
        pf.Check("Hostname", pf.hostname),
        pf.Check("KubeletVersion", pf.kubelet_version),
        pf.Check("Service-Kubelet", pf.service_kubelet),
        pf.Check(f"Port-{c.KUBELET_PORT}", pf.port_open(c.KUBELET_PORT, c.KUBELET_CONFIG_FILE, "kubelet")),
        pf.Check(pf.label("FileContent", pf.IPV4_FORWARD), pf.file_content(pf.IPV4_FORWARD, b"1")),
    ]


def not_ready_for_control_plane(ctx: JoinNodeContext, cfg: InitConfig) -> str:
    """checkIfReadyForAdditionalControlPlane: why this cluster cannot take a control-plane join, or ""."""
    if not cfg.cluster.controlPlaneEndpoint:
        return ("unable to add a new control plane instance to a cluster that doesn't have a stable "
                "controlPlaneEndpoint address")
    if ctx.join.certificate_key:
        return ""
    missing = [name for name in SHARED_CERTS if not ctx.fs.exists(f"{cfg.pki_dir}/{name}")]
    if missing:
        return (f"the certificates shared among control plane instances are not here ({', '.join(missing)} "
                f"missing in {cfg.pki_dir}) and no --certificate-key was given to download them")
    return ""


def run_preflight(ctx: JoinNodeContext, host: HostFacts | None = None) -> None:
    if ctx.secrets.get(DISCOVERY_SINCE) is None:  # once per run, not once per discovery attempt
        ctx.log(PHASE, "Running pre-flight checks")
    cfg = ensure_cluster(ctx)
    facts = host or HostFacts()
    p = pf.Preflight(cfg=cfg, fs=ctx.fs, host=facts, owner=pf.node_ownership(ctx.fs, cfg))
    ignore = ignore_set(ctx)
    for batch in (root_checks(), join_node_checks(cfg, ctx.join.join.caCertPath)):
        fatal = pf.run_checks(batch, p, ignore, ctx.out)
        if fatal:
            raise PermanentError(fatal)
    if not ctx.join.is_control_plane:
        return
    why = not_ready_for_control_plane(ctx, cfg)
    if why:
        raise PermanentError(NOT_READY.format(error=why))
    ctx.log(PHASE, "Running pre-flight checks before initializing the new control plane instance")
    checks = [ch for ch in init_node_checks(cfg) if ch.name != f"Port-{c.KUBELET_PORT}"]
    fatal = pf.run_checks(checks, p, ignore, ctx.out)
    if fatal:
        raise PermanentError(fatal)
