"""Phase ``preflight``: kubeadm's init checks, in kubeadm's order (kubeadm-spec 2.1, InitNodeChecks).

Reads: the host (``HostFacts``) and the node root. Writes: nothing. Prints ``[preflight] Running
pre-flight checks``, then one ``\\t[WARNING <Name>]: ...`` line per warning and one ``[preflight]
Resuming: ...`` line per artifact left by an earlier kubeboot run of this cluster. Errors of checks not
named in ``--ignore-preflight-errors`` / ``nodeRegistration.ignorePreflightErrors`` (``all``: every
check) raise ``PermanentError`` carrying kubeadm's multi-line "Some fatal errors occurred" text.

Like kubeadm, the privileged-user check runs alone first and stops the phase before anything else
is probed. kubeboot pulls no images (kubeadm's ImagePull step): the container runtime does on start.
"""

from __future__ import annotations

import ipaddress

from kubeboot.config import constants as c
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import preflight as pf
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.hostfacts import HostFacts
from kubeboot.tasks.phases.context import NodeContext

PHASE = "preflight"


def _manifest(component: str) -> str:
    return f"{c.MANIFESTS_DIR}/{component}.yaml"


def _port(port: int, component: str, owner_file: str) -> pf.Check:
    return pf.Check(f"Port-{port}", pf.port_open(port, owner_file, component))


def _cidrs(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _families(cfg: InitConfig) -> set[int]:
    """IP versions in use: service and pod CIDRs plus the advertise address (kubeadm's IPV4Check/IPV6Check)."""
    versions: set[int] = {ipaddress.ip_network(cidr, strict=False).version
                for cidr in _cidrs(cfg.cluster.networking.serviceSubnet) + _cidrs(cfg.cluster.networking.podSubnet)}
    if cfg.advertise_address:
        versions.add(ipaddress.ip_address(cfg.advertise_address).version)
    return versions


def root_checks() -> list[pf.Check]:
    return [pf.Check("IsPrivilegedUser", pf.privileged_user)]


def init_node_checks(cfg: InitConfig) -> list[pf.Check]:
    """kubeadm's InitNodeChecks for a first control-plane node, minus the ones kubeboot cannot run."""
    checks = [
        pf.Check("NumCPU", pf.num_cpu),
        pf.Check("Mem", pf.mem),
        pf.Check("KubernetesVersion", pf.kubernetes_version),
        pf.Check("Firewalld", pf.firewalld),
        _port(cfg.bind_port, c.KUBE_APISERVER, _manifest(c.KUBE_APISERVER)),
        _port(c.SCHEDULER_PORT, c.KUBE_SCHEDULER, _manifest(c.KUBE_SCHEDULER)),
        _port(c.KCM_PORT, c.KUBE_CONTROLLER_MANAGER, _manifest(c.KUBE_CONTROLLER_MANAGER)),
        *(pf.Check(pf.label("FileAvailable", _manifest(n)), pf.file_available(_manifest(n)))
          for n in (*c.CONTROL_PLANE_COMPONENTS, c.ETCD)),
        pf.Check("HTTPProxy", pf.http_proxy),
        *(pf.Check("HTTPProxyCIDR", pf.http_proxy_cidr(cidr))
          for cidr in _cidrs(cfg.cluster.networking.serviceSubnet) + _cidrs(cfg.cluster.networking.podSubnet)),
        pf.Check("CRI", pf.cri),
        pf.Check("Swap", pf.swap),
        *(pf.Check(f"FileExisting-{exe}", pf.in_path(exe, mandatory)) for exe, mandatory in pf.EXECUTABLES),
        pf.Check("Hostname", pf.hostname),
        pf.Check("KubeletVersion", pf.kubelet_version),
        pf.Check("Service-Kubelet", pf.service_kubelet),
        _port(c.KUBELET_PORT, "kubelet", c.KUBELET_CONFIG_FILE),
    ]
    families = _families(cfg)
    if 4 in families:
        checks.append(pf.Check(pf.label("FileContent", pf.IPV4_FORWARD), pf.file_content(pf.IPV4_FORWARD, b"1")))
    if 6 in families:
        checks.append(pf.Check(pf.label("FileContent", pf.IPV6_FORWARDING), pf.file_content(pf.IPV6_FORWARDING, b"1")))
    if not cfg.cluster.is_external_etcd:
        data_dir = cfg.cluster.local_etcd.dataDir
        checks += [
            _port(c.ETCD_CLIENT_PORT, c.ETCD, _manifest(c.ETCD)),
            _port(c.ETCD_PEER_PORT, c.ETCD, _manifest(c.ETCD)),
            pf.Check(pf.label("DirAvailable", data_dir), pf.dir_available(data_dir)),
        ]
    return checks


def ignore_set(ctx: NodeContext) -> frozenset[str]:
    names = set(ctx.ignore_preflight_errors) | set(ctx.cfg.init.nodeRegistration.ignorePreflightErrors)
    return frozenset(n.strip().lower() for n in names if n.strip())


def run_preflight(ctx: NodeContext, host: HostFacts | None = None) -> None:
    ctx.log(PHASE, "Running pre-flight checks")
    p = pf.Preflight(cfg=ctx.cfg, fs=ctx.fs, host=host or HostFacts(), owner=pf.node_ownership(ctx.fs, ctx.cfg))
    ignore = ignore_set(ctx)
    for batch in (root_checks(), init_node_checks(ctx.cfg)):
        fatal = pf.run_checks(batch, p, ignore, ctx.out)
        if fatal:
            raise PermanentError(fatal)
