"""Phases ``kubelet-start`` and ``kubelet-wait-bootstrap`` of a join (kubeadm v1.36 cmd/phases/join/kubelet.go).

``kubelet-start`` reads the trusted cluster (``joincluster``), refuses a Ready Node of the same name
(before writing anything; kubeadm checks after its first two files) and writes, in kubeadm's order:
``/etc/kubernetes/bootstrap-kubelet.conf`` (0600: the TLS bootstrap token; its server is this node's
own API server on a control-plane join, ControlPlaneKubeletLocalMode being GA), the CA at
``caCertPath`` when absent (0644), kubeboot's node marker (the kubelet stopped first), writes
``instance-config.yaml``, ``config.yaml`` (the ``kubelet-config`` ConfigMap, user patches, the instance
patch) and ``kubeadm-flags.env`` (a worker's ``--register-with-taints``), and starts the kubelet.

``kubelet-wait-bootstrap`` waits for the kubelet's health (``timeouts.kubeletHealthCheck``) and for a
usable ``kubelet.conf`` from its TLS bootstrap (``timeouts.tlsBootstrap``), then removes
``bootstrap-kubelet.conf``: the token leaves the disk. Like ``wait-control-plane``, one attempt waits a
few seconds and retries; the deadlines count from the attempt that started each wait (run secrets).

Resuming: a node whose ``kubelet.conf`` already holds a client certificate for ``system:node:<name>``
signed by the cluster CA has bootstrapped: no bootstrap file is written again, and the Ready Node of
that name is its own, not a clash. So one kubelet client certificate stays in use.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from cryptography import x509

from kubeboot.config import constants as c
from kubeboot.config.duration import format_duration
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import discovery as disc
from kubeboot.tasks import goyaml, kubeapi, kubeletconfig, pki
from kubeboot.tasks import kubeconfig as kc
from kubeboot.tasks.errors import PermanentError, TemporaryError
from kubeboot.tasks.nodemarker import marker_record, write_node_marker
from kubeboot.tasks.phases.joincluster import bootstrap_client, trusted_cluster
from kubeboot.tasks.phases.joincontext import JoinNodeContext
from kubeboot.tasks.phases.kubeletstart import start_kubelet
from kubeboot.tasks.phases.markcontrolplane import desired_taints, taint_string
from kubeboot.tasks.phases.waitcp import ATTEMPT_WINDOW, Waiter, WaitState

PHASE = "kubelet-start"
BOOTSTRAP_CONF = f"{c.KUBERNETES_DIR}/{c.BOOTSTRAP_KUBELET_CONF}"
KUBELET_CONF = f"{c.KUBERNETES_DIR}/{c.KUBELET_CONF}"
TLS_SINCE = "join.tls-bootstrap-since"  # run secret: when the TLS bootstrap wait started
POLL = 1.0  # kubeadm constants.TLSBootstrapRetryInterval
FILE_MODE, DIR_MODE = 0o644, 0o700


def _now() -> datetime:
    return datetime.now(UTC)


# --- kubelet.conf -------------------------------------------------------------------------------


def kubelet_client_ready(ctx: JoinNodeContext, ca_pem: bytes) -> bool:
    """kubelet.conf yields a client: its certificate (embedded, or the file it names) loads with its key,
    is for ``system:node:<node>`` and is signed by the cluster CA (kubeadm's ClientSetFromFile, stricter)."""
    text = ctx.fs.read_text(KUBELET_CONF)
    if text is None:
        return False
    try:
        parsed = kc.parse(text)
        doc = goyaml.load(text)
        user = next((u.get("user") or {} for u in doc.get("users") or [] if u.get("name") == parsed.user_name), {})
        cert_pem = parsed.client_cert_data or ctx.fs.read_bytes(str(user.get("client-certificate") or "")) or b""
        key_pem = parsed.client_key_data or ctx.fs.read_bytes(str(user.get("client-key") or "")) or b""
        cert, key = pki.load_cert(cert_pem), pki.load_key(key_pem)
        ca = pki.load_cert(ca_pem)
    except (kc.KubeconfigError, ValueError, AttributeError):
        return False
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return (pki.key_matches_cert(key, cert) and pki.signature_error(cert, ca) is None
            and bool(cn) and cn[0].value == f"{c.NODE_USER_PREFIX}{ctx.cfg.node_name}")


# --- kubelet-start ------------------------------------------------------------------------------


def join_kubelet_flags(cfg: InitConfig, hostname: str, *, worker: bool) -> list[str]:
    """buildKubeletArgs of a join: init's flags, plus a worker's ``--register-with-taints`` (a control
    plane's taints come from mark-control-plane); kubeletExtraArgs win, the list stays sorted."""
    flags = kubeletconfig.kubelet_flags(cfg, hostname)
    taints = desired_taints(cfg) if worker and cfg.init.nodeRegistration.taints else []
    overridden = any(a.name == "register-with-taints" for a in cfg.init.nodeRegistration.kubeletExtraArgs)
    if taints and not overridden:
        flags.append(f"--register-with-taints={','.join(taint_string(t) for t in taints)}")
    return sorted(flags, key=lambda f: f.partition("=")[0])


def refuse_ready_namesake(ctx: JoinNodeContext, info: disc.ClusterInfo) -> None:
    """A Node of this name that is Ready belongs to another machine: joining would take it over."""
    name = ctx.cfg.node_name
    api = bootstrap_client(ctx, info)
    what = f'cannot get Node "{name}"'
    try:
        node = kubeapi.call(lambda: kubeapi.request(api, "GET", kubeapi.object_path("Node", None, name)), what)
    except kubeapi.ApiException as e:
        if e.status == 404:
            return
        if e.status == 401:
            raise PermanentError(f"{what}: the bootstrap token was refused (401 Unauthorized): it is unknown to the "
                                 "cluster or has expired") from None
        raise TemporaryError(f"{what}: {kubeapi.describe(e)}") from e
    for cond in (node.get("status") or {}).get("conditions") or []:
        # A copy of this phase that died after starting the kubelet leaves it bootstrapping: it may have
        # registered the Node and gone Ready since the caller looked, and then the Node is this one's.
        if cond.get("type") == "Ready" and cond.get("status") == "True" and not kubelet_client_ready(ctx, info.ca_pem):
            raise PermanentError(f'a Node with name "{name}" and status "Ready" already exists in the cluster. You '
                                 "must delete the existing Node or change the name of this new joining Node")


def _write_kubelet_files(ctx: JoinNodeContext) -> None:
    cfg = ctx.cfg
    if cfg.profile.node_local_cri_socket:
        ctx.log(PHASE, f'Writing kubelet configuration to file "{c.KUBELET_INSTANCE_CONFIG_FILE}"')
        ctx.fs.write(c.KUBELET_INSTANCE_CONFIG_FILE, kubeletconfig.instance_config(cfg), mode=FILE_MODE,
                     dir_mode=DIR_MODE)
    cluster_doc = kubeletconfig.cluster_kubelet_config(cfg, resolved_active=kubeletconfig.systemd_resolved_active(
        ctx.fs))
    node_doc = kubeletconfig.node_kubelet_config(cluster_doc, cfg, ctx.out)
    ctx.log(PHASE, f'Writing kubelet configuration to file "{c.KUBELET_CONFIG_FILE}"')
    ctx.fs.write(c.KUBELET_CONFIG_FILE, kubeletconfig.dump_yaml(node_doc), mode=FILE_MODE, dir_mode=DIR_MODE)
    ctx.log(PHASE, f'Writing kubelet environment file with flags to file "{c.KUBELET_FLAGS_ENV_FILE}"')
    flags = join_kubelet_flags(cfg, kubeletconfig.os_hostname(ctx.fs), worker=not ctx.join.is_control_plane)
    env = f"{kubeletconfig.KUBELET_ENV_VAR}={kubeletconfig.go_quote(' '.join(flags))}\n"
    ctx.fs.write(c.KUBELET_FLAGS_ENV_FILE, env, mode=FILE_MODE, dir_mode=DIR_MODE)


def run_kubelet_start(ctx: JoinNodeContext) -> None:
    info = trusted_cluster(ctx)
    cfg = ctx.cfg
    bootstrapped = kubelet_client_ready(ctx, info.ca_pem)
    if bootstrapped:
        ctx.log(PHASE, f'Using the existing "{KUBELET_CONF}": this node has done its TLS bootstrap')
    else:
        refuse_ready_namesake(ctx, info)  # before anything is written: a refused join leaves nothing
    dry_run = ctx.join.join.dryRun
    if ctx.kubelet is not None and not dry_run:
        # Stopped before the bootstrap file appears: a running kubelet would bootstrap and register
        # its Node before kubeadm-flags.env gives it its labels and taints.
        ctx.kubelet.stop(ctx.out)
    if not bootstrapped:
        server = cfg.local_server if ctx.join.is_control_plane else info.server
        boot = disc.bootstrap_kubeconfig(info, ctx.join.tls_bootstrap_token, cfg.cluster.clusterName, server)
        ctx.fs.write(BOOTSTRAP_CONF, boot, mode=0o600)
    ca_path = ctx.join.join.caCertPath
    if not ctx.fs.exists(ca_path):
        ctx.fs.write(ca_path, info.ca_pem, mode=FILE_MODE)
    write_node_marker(ctx.fs, marker_record(cfg.cluster.clusterName, cfg.node_name, info.ca_hash))
    _write_kubelet_files(ctx)
    if dry_run:
        ctx.log(PHASE, "Would start the kubelet")
        return
    start_kubelet(ctx)


# --- kubelet-wait-bootstrap ---------------------------------------------------------------------


def _wait_tls_bootstrap(ctx: JoinNodeContext, info: disc.ClusterInfo, window: float) -> None:
    since_raw = ctx.secrets.get(TLS_SINCE)
    if since_raw is None:
        ctx.log(PHASE, "Waiting for the kubelet to perform the TLS Bootstrap")
        since_raw = _now().isoformat().encode()
        ctx.secrets.put(TLS_SINCE, since_raw)
    end = time.monotonic() + window
    while not kubelet_client_ready(ctx, info.ca_pem):
        if time.monotonic() + POLL >= end:
            timeout = ctx.cfg.init.timeouts.seconds("tlsBootstrap")
            elapsed = (_now() - datetime.fromisoformat(since_raw.decode())).total_seconds()
            if elapsed >= timeout:
                raise PermanentError(
                    f'timed out waiting for the kubelet to perform the TLS Bootstrap: no usable "{KUBELET_CONF}" '
                    f"after {format_duration(timeout)} (timeouts.tlsBootstrap); check the kubelet's log and that "
                    "its certificate signing request was approved")
            raise TemporaryError("the kubelet has not finished its TLS bootstrap yet", POLL)
        time.sleep(POLL)


def run_kubelet_wait_bootstrap(ctx: JoinNodeContext, *, window: float = ATTEMPT_WINDOW) -> None:
    info = trusted_cluster(ctx)
    if ctx.join.join.dryRun:
        ctx.log("kubelet-wait", "Would wait for the kubelet to be bootstrapped")
        return
    state = WaitState.load(ctx)
    if not state.kubelet_done and ctx.kubelet is not None:
        Waiter(ctx, _now, time.sleep, window, state).kubelet()
        state.save(ctx)
    _wait_tls_bootstrap(ctx, info, window)
    if ctx.fs.remove(BOOTSTRAP_CONF):
        ctx.log(PHASE, f'Removed "{BOOTSTRAP_CONF}": the bootstrap token is no longer on this node')


__all__ = ["join_kubelet_flags", "kubelet_client_ready", "run_kubelet_start", "run_kubelet_wait_bootstrap"]
