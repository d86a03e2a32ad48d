"""Phase ``control-plane``: static Pod manifests of kube-apiserver, kube-controller-manager and
kube-scheduler (kubeadm-spec 2.5; kubeadm phases/controlplane/{manifests,volumes}.go).

Reads: the configuration; on the node, which CA-bundle directories exist (``CA_CERTS_EXTRA_DIRS``, as
kubeadm's os.Stat on the host) and whether ``<pki>/ca.key`` is absent next to a valid ``ca.crt``
(External CA mode: the controller-manager gets empty ``--cluster-signing-*-file`` flags); the proxy
variables of this process (``*_proxy``), like kubeadm; the patches directory (per-component targets).
Writes: ``/etc/kubernetes/manifests/<component>.yaml`` (0600, directory 0700) only when its bytes
change: a re-run keeps files and mtimes, one changed ``extraArgs`` rewrites only its manifest. With the
RootlessControlPlane gate, first the users and groups and the owners of the component's keys and
kubeconfig (``tasks.rootless``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509

from kubeboot.config import constants as c
from kubeboot.config.models import ControlPlaneComponent
from kubeboot.config.paths import go_dir
from kubeboot.config.resolved import InitConfig, join_host_port
from kubeboot.tasks import manifests as m
from kubeboot.tasks import rootless
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases.context import NodeContext
from kubeboot.tasks.phases.etcd import SCRATCH_PATCHES

PHASE = "control-plane"
HostCheck = Callable[[str], bool]


def apiserver_command(cfg: InitConfig) -> list[str]:
    pki, cluster = cfg.pki_dir, cfg.cluster
    defaults = m.args(
        ("advertise-address", cfg.advertise_address),
        ("enable-admission-plugins", "NodeRestriction"),
        ("service-cluster-ip-range", cluster.networking.serviceSubnet),
        ("service-account-key-file", f"{pki}/sa.pub"),
        ("service-account-signing-key-file", f"{pki}/sa.key"),
        ("service-account-issuer", f"https://kubernetes.default.svc.{cluster.networking.dnsDomain}"),
        ("client-ca-file", f"{pki}/ca.crt"),
        ("tls-cert-file", f"{pki}/apiserver.crt"),
        ("tls-private-key-file", f"{pki}/apiserver.key"),
        ("kubelet-client-certificate", f"{pki}/apiserver-kubelet-client.crt"),
        ("kubelet-client-key", f"{pki}/apiserver-kubelet-client.key"),
        ("enable-bootstrap-token-auth", "true"),
        ("secure-port", str(cfg.bind_port)),
        ("allow-privileged", "true"),
        ("kubelet-preferred-address-types", "InternalIP,ExternalIP,Hostname"),
        ("requestheader-username-headers", "X-Remote-User"),
        ("requestheader-group-headers", "X-Remote-Group"),
        ("requestheader-extra-headers-prefix", "X-Remote-Extra-"),
        ("requestheader-client-ca-file", f"{pki}/front-proxy-ca.crt"),
        ("requestheader-allowed-names", "front-proxy-client"),
        ("proxy-client-cert-file", f"{pki}/front-proxy-client.crt"),
        ("proxy-client-key-file", f"{pki}/front-proxy-client.key"),
    )
    external = cluster.etcd.external
    if external is not None:
        m.set_arg(defaults, "etcd-servers", ",".join(external.endpoints))
        if external.caFile:
            m.set_arg(defaults, "etcd-cafile", external.caFile)
        if external.certFile and external.keyFile:
            m.set_arg(defaults, "etcd-certfile", external.certFile)
            m.set_arg(defaults, "etcd-keyfile", external.keyFile)
    else:
        local_client = m.arg_value(cluster.local_etcd.extraArgs, "advertise-client-urls")
        local_default = f"https://{join_host_port(cfg.loopback, c.ETCD_CLIENT_PORT)}"
        m.set_arg(defaults, "etcd-servers", local_client or local_default)
        m.set_arg(defaults, "etcd-cafile", f"{pki}/etcd/ca.crt")
        m.set_arg(defaults, "etcd-certfile", f"{pki}/apiserver-etcd-client.crt")
        m.set_arg(defaults, "etcd-keyfile", f"{pki}/apiserver-etcd-client.key")
    extra = cluster.apiServer.extraArgs
    if m.arg_value(extra, "authorization-config") is None:
        # getAuthzModes: a user's authorization-mode wins anyway, through the override below.
        m.set_arg(defaults, "authorization-mode", "Node,RBAC")
    return [c.KUBE_APISERVER, *m.arguments_to_command(defaults, extra)]


def controller_manager_command(cfg: InitConfig, *, external_ca: bool) -> list[str]:
    pki, cluster = cfg.pki_dir, cfg.cluster
    kubeconfig = f"{c.KUBERNETES_DIR}/{c.CONTROLLER_MANAGER_CONF}"
    defaults = m.args(
        ("bind-address", "127.0.0.1"),
        ("leader-elect", "true"),
        ("kubeconfig", kubeconfig),
        ("authentication-kubeconfig", kubeconfig),
        ("authorization-kubeconfig", kubeconfig),
        ("client-ca-file", f"{pki}/ca.crt"),
        ("requestheader-client-ca-file", f"{pki}/front-proxy-ca.crt"),
        ("root-ca-file", f"{pki}/ca.crt"),
        ("service-account-private-key-file", f"{pki}/sa.key"),
        ("cluster-signing-cert-file", f"{pki}/ca.crt"),
        ("cluster-signing-key-file", f"{pki}/ca.key"),
        ("use-service-account-credentials", "true"),
        ("controllers", "*,bootstrapsigner,tokencleaner"),
    )
    if external_ca:
        # Empty, so the csrsigning controller does not start without the CA key.
        m.set_arg(defaults, "cluster-signing-key-file", "")
        m.set_arg(defaults, "cluster-signing-cert-file", "")
    net = cluster.networking
    if net.podSubnet:
        m.set_arg(defaults, "allocate-node-cidrs", "true")
        m.set_arg(defaults, "cluster-cidr", net.podSubnet)
        if net.serviceSubnet:
            m.set_arg(defaults, "service-cluster-ip-range", net.serviceSubnet)
    if cluster.clusterName:
        m.set_arg(defaults, "cluster-name", cluster.clusterName)
    return [c.KUBE_CONTROLLER_MANAGER, *m.arguments_to_command(defaults, cluster.controllerManager.extraArgs)]


def scheduler_command(cfg: InitConfig) -> list[str]:
    kubeconfig = f"{c.KUBERNETES_DIR}/{c.SCHEDULER_CONF}"
    defaults = m.args(("bind-address", "127.0.0.1"), ("leader-elect", "true"), ("kubeconfig", kubeconfig),
                    ("authentication-kubeconfig", kubeconfig), ("authorization-kubeconfig", kubeconfig))
    return [c.KUBE_SCHEDULER, *m.arguments_to_command(defaults, cfg.cluster.scheduler.extraArgs)]


def etcd_cert_dirs(cfg: InitConfig) -> list[str]:
    """getEtcdCertVolumes: external etcd cert directories not already mounted, outermost only, sorted."""
    ext = cfg.cluster.etcd.external
    if ext is None:
        return []
    # certificatesDir as written, as kubeadm compares it (a trailing slash makes it miss <pki>'s own files).
    mounted = (c.CA_CERTS_DIR, *c.CA_CERTS_EXTRA_DIRS, cfg.cluster.certificatesDir)
    dirs: set[str] = set()
    for path in (ext.caFile, ext.certFile, ext.keyFile):
        d = go_dir(path)
        # String prefixes, as kubeadm compares them (strings.HasPrefix), not path components.
        if d == "." or d.startswith(mounted):
            continue
        if any(d.startswith(e) for e in dirs):
            continue
        dirs = {e for e in dirs if not e.startswith(d)} | {d}
    return sorted(dirs)


def control_plane_mounts(cfg: InitConfig, component: str, host_has: HostCheck) -> m.HostPathMounts:
    """getHostPathVolumesForTheControlPlane for one component; ``host_has`` answers os.Stat on the node."""
    mounts, cluster = m.HostPathMounts(), cfg.cluster
    if component in (c.KUBE_APISERVER, c.KUBE_CONTROLLER_MANAGER):
        pki = cluster.certificatesDir  # kubeadm mounts the field as written (volumes.go)
        mounts.add("k8s-certs", pki, pki, True, m.DIR_OR_CREATE)
        mounts.add("ca-certs", c.CA_CERTS_DIR, c.CA_CERTS_DIR, True, m.DIR_OR_CREATE)
        for d in c.CA_CERTS_EXTRA_DIRS:
            if host_has(d):
                mounts.add(d.replace("/", "-")[1:], d, d, True, m.DIR_OR_CREATE)
    if component == c.KUBE_APISERVER:
        for i, d in enumerate(etcd_cert_dirs(cfg)):
            mounts.add(f"etcd-certs-{i}", d, d, True, m.DIR_OR_CREATE)
        mounts.add_extra(cluster.apiServer.extraVolumes)
    elif component == c.KUBE_CONTROLLER_MANAGER:
        kubeconfig = f"{c.KUBERNETES_DIR}/{c.CONTROLLER_MANAGER_CONF}"
        mounts.add("kubeconfig", kubeconfig, kubeconfig, True, m.FILE_OR_CREATE)
        # Read-write: flexvolume plugins talk to their storage back ends through unix sockets here.
        flex = m.arg_value(cluster.controllerManager.extraArgs, "flex-volume-plugin-dir") or c.FLEXVOLUME_DIR
        mounts.add("flexvolume-dir", flex, flex, False, m.DIR_OR_CREATE)
        mounts.add_extra(cluster.controllerManager.extraVolumes)
    else:
        kubeconfig = f"{c.KUBERNETES_DIR}/{c.SCHEDULER_CONF}"
        mounts.add("kubeconfig", kubeconfig, kubeconfig, True, m.FILE_OR_CREATE)
        mounts.add_extra(cluster.scheduler.extraVolumes)
    return mounts


# Probe paths per component (liveness, readiness or None, startup) and the port they reach.
_PROBES = {
    c.KUBE_APISERVER: ("/livez", "/readyz", "/livez"),
    c.KUBE_CONTROLLER_MANAGER: ("/healthz", None, "/healthz"),
    c.KUBE_SCHEDULER: ("/livez", "/readyz", "/livez"),
}


def _command(cfg: InitConfig, component: str, external_ca: bool) -> list[str]:
    if component == c.KUBE_APISERVER:
        return apiserver_command(cfg)
    if component == c.KUBE_CONTROLLER_MANAGER:
        return controller_manager_command(cfg, external_ca=external_ca)
    return scheduler_command(cfg)


def probe_address(cfg: InitConfig, component: str) -> str:
    """GetAPIServerProbeAddress / GetControllerManagerProbeAddress / GetSchedulerProbeAddress."""
    if component == c.KUBE_APISERVER:
        return m.probe_host(cfg.advertise_address) if cfg.advertise_address else "127.0.0.1"
    bind = m.arg_value(_component_config(cfg, component).extraArgs, "bind-address")
    return "127.0.0.1" if bind is None else m.probe_host(bind)


def _component_config(cfg: InitConfig, component: str) -> ControlPlaneComponent:
    cluster = cfg.cluster
    return {c.KUBE_APISERVER: cluster.apiServer, c.KUBE_CONTROLLER_MANAGER: cluster.controllerManager,
            c.KUBE_SCHEDULER: cluster.scheduler}[component]


def control_plane_pod(cfg: InitConfig, component: str, *, host_has: HostCheck, external_ca: bool,
                      environ: Mapping[str, str]) -> dict[str, Any]:
    """GetStaticPodSpecs for one component."""
    if component not in _PROBES:
        raise ValueError(f"unknown control-plane component {component!r}")
    mounts = control_plane_mounts(cfg, component, host_has)
    host, (live, ready, start) = probe_address(cfg, component), _PROBES[component]
    port = {c.KUBE_APISERVER: cfg.bind_port, c.KUBE_CONTROLLER_MANAGER: c.KCM_PORT}.get(component, c.SCHEDULER_PORT)
    box = m.container(
        component, cfg.image(component), _command(cfg, component, external_ca), port=port,
        mounts=mounts.mount_list(), env=m.merge_env(m.proxy_env(environ), _component_config(cfg, component).extraEnvs),
        cpu=c.CPU_REQUESTS[component], liveness=m.liveness_probe(host, live, "HTTPS"),
        readiness=m.readiness_probe(host, ready, "HTTPS") if ready else None,
        startup=m.startup_probe(host, start, "HTTPS", m.health_timeout(cfg)),
    )
    annotations = {c.APISERVER_ADVERTISE_ANNOTATION: cfg.local_endpoint} if component == c.KUBE_APISERVER else None
    return m.component_pod(box, mounts.volumes, annotations)


# --- the phase ---------------------------------------------------------------------------------------


def using_external_ca(fs: NodeFS, cfg: InitConfig) -> bool:
    """certs.UsingExternalCA as the manifests use it: a loadable ca.crt and no ca.key."""
    if fs.exists(f"{cfg.pki_dir}/ca.key"):
        return False
    pem = fs.read_bytes(f"{cfg.pki_dir}/ca.crt")
    if pem is None:
        return False
    try:
        x509.load_pem_x509_certificate(pem)
    except ValueError:
        return False
    return True


def node_pod(ctx: NodeContext, component: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The manifest of ``component`` for this node, as kubeadm would write it (patches not applied)."""
    return control_plane_pod(ctx.cfg, component, host_has=lambda p: ctx.fs.path(p).exists(),
                             external_ca=using_external_ca(ctx.fs, ctx.cfg),
                             environ=os.environ if environ is None else environ)


def run_control_plane_prepare(ctx: NodeContext) -> None:
    ctx.log(PHASE, f'Using manifest folder "{c.MANIFESTS_DIR}"')


def run_control_plane(ctx: NodeContext, component: str) -> None:
    if component not in c.CONTROL_PLANE_COMPONENTS:
        raise ValueError(f"unknown control-plane component {component!r}")
    ctx.log(PHASE, f'Creating static Pod manifest for "{component}"')
    announced = ctx.scratch.setdefault(SCRATCH_PATCHES, set())
    pod = rootless.apply(ctx.fs, ctx.cfg, component, node_pod(ctx, component), lambda line: ctx.log(PHASE, line),
                         external_ca=using_external_ca(ctx.fs, ctx.cfg))
    pod = m.finish_pod(component, pod, ctx.cfg.patches_dir, ctx.out, announced)
    m.write_static_pod(ctx.fs, component, pod)
