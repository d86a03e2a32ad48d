"""Phase ``wait-control-plane`` (kubeadm-spec 2.7; kubeadm cmd/phases/init/waitcontrolplane.go and
util/apiclient/wait.go of v1.34+, where WaitForAllControlPlaneComponents is GA).

Reads: the node's ``/var/lib/kubelet/config.yaml`` (``healthzBindAddress``/``healthzPort``), the static Pod
manifests of kube-apiserver, kube-controller-manager and kube-scheduler (address and port flags),
``admin.conf`` (credentials for the API server's ``/livez``, then the ClusterRoleBinding) and, when
admin.conf is not yet allowed to create it, ``super-admin.conf``.
Writes: run secret ``wait-control-plane.state`` (when each wait started, which components are healthy),
and ClusterRoleBinding ``kubeadm:cluster-admins`` through the API.

kubeadm blocks for up to 4 minutes polling every 500 ms. Here one attempt polls for a few seconds at
most (``ATTEMPT_WINDOW``) and raises ``TemporaryError`` while something is not healthy; the overall
deadlines (``timeouts.kubeletHealthCheck``, ``timeouts.controlPlaneComponentHealthCheck``) count from the
first attempt that started each wait, kept in the run's secrets, and end with a ``PermanentError``:
kubeadm's error line first (the run state's one-line summary), then kubeadm's troubleshooting text.
kubeadm's lines are printed once per run: the "Waiting"/"Checking" lines on the attempt that starts a
wait, "is healthy after" when a component first answers 200 (time since that start), "is not healthy
after" at the deadline. A component that answered once is not checked again, as in kubeadm. A 403 from
``/livez`` while RBAC is bootstrapping is just "not healthy yet".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from kubeboot.config import constants as c
from kubeboot.config.duration import format_duration
from kubeboot.tasks import goyaml, health, kubeapi
from kubeboot.tasks.errors import PermanentError, TemporaryError
from kubeboot.tasks.phases.context import NodeContext

PHASE = "wait-control-plane"
KUBELET_CHECK = "kubelet-check"
CP_CHECK = "control-plane-check"
STATE_SECRET = "wait-control-plane.state"
ATTEMPT_WINDOW = 5.0  # seconds one attempt keeps polling before handing back to the retry loop
POLL_INTERVAL = 0.5  # kubeadm's KubernetesAPICallRetryInterval
PROBE_TIMEOUT = 2.0
RETRY_DELAY = 1.0  # TemporaryError delay: the next attempt comes soon, the task is not held meanwhile
log = logging.getLogger("kubeboot.wait-control-plane")

Clock = Callable[[], datetime]
Sleep = Callable[[float], None]

KUBELET_FAIL_MSG = """
Unfortunately, an error has occurred, likely caused by:
	- The kubelet is not running
	- The kubelet is unhealthy due to a misconfiguration of the node in some way (required cgroups disabled)

If you are on a systemd-powered system, you can try to troubleshoot the error with the following commands:
	- 'systemctl status kubelet'
	- 'journalctl -xeu kubelet'
"""

CONTROL_PLANE_FAIL_TEMPLATE = """
A control plane component may have crashed or exited when started by the container runtime.
To troubleshoot, list all containers using your preferred container runtimes CLI.
Here is one example how you may list all running Kubernetes containers by using crictl:
	- 'crictl --runtime-endpoint {socket} ps -a | grep kube | grep -v pause'
	Once you have found the failing container, you can inspect its logs with:
	- 'crictl --runtime-endpoint {socket} logs CONTAINERID'
"""


# --- what to check ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # as kubeadm prints it (addresses from the node's files)
    probe_url: str  # where this node actually answers (loopback mapped to the node's address)


def _host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _target(ctx: NodeContext, name: str, scheme: str, host: str, port: str, path: str) -> Target:
    return Target(name, f"{scheme}://{_host_port(host, port)}/{path}",
                  f"{scheme}://{_host_port(ctx.map_address(host), port)}/{path}")


def kubelet_target(ctx: NodeContext) -> Target | None:
    """The kubelet's health endpoint from the node's KubeletConfiguration; None when healthzPort is 0."""
    doc: Any = goyaml.load(ctx.fs.read_text(c.KUBELET_CONFIG_FILE) or "{}") or {}
    if not isinstance(doc, dict):
        doc = {}
    port = doc.get("healthzPort", c.KUBELET_HEALTHZ_PORT)
    if port == 0:
        return None
    host = str(doc.get("healthzBindAddress") or "127.0.0.1")
    return _target(ctx, "kubelet", "http", host, str(port), "healthz")


# kubeadm getControlPlaneComponents: (component, address flag, default address, default port, endpoint)
_COMPONENTS = (
    (c.KUBE_APISERVER, "advertise-address", None, c.APISERVER_PORT, "livez"),
    (c.KUBE_CONTROLLER_MANAGER, "bind-address", "127.0.0.1", c.KCM_PORT, "healthz"),
    (c.KUBE_SCHEDULER, "bind-address", "127.0.0.1", c.SCHEDULER_PORT, "livez"),
)


def command_values(pod: Any, component: str, flags: tuple[str, ...]) -> list[str]:
    """kubeadm getControlPlaneComponentAddressAndPort: the values of ``flags`` in the container whose
    command starts with ``component`` ("" when absent)."""
    containers = ((pod or {}).get("spec") or {}).get("containers") or []
    command = next((ct.get("command") for ct in containers if (ct.get("command") or [None])[0] == component), None)
    if command is None:
        raise ValueError(f'the Pod has no container command starting with "{component}"')
    values = [""] * len(flags)
    for raw in command:
        line = str(raw).strip()
        for i, flag in enumerate(flags):
            if not line.startswith((f"--{flag}", f"-{flag}")):
                continue
            _, eq, value = line.partition("=")
            values[i] = value if eq else line.partition(" ")[2]
    return values


def control_plane_targets(ctx: NodeContext) -> list[Target]:
    """The three components' health URLs from the node's static Pod manifests."""
    targets, errors = [], []
    for name, addr_flag, default_addr, default_port, endpoint in _COMPONENTS:
        path = f"{c.MANIFESTS_DIR}/{name}.yaml"
        text = ctx.fs.read_text(path)
        try:
            if text is None:
                raise ValueError(f'failed to read manifest for "{path}": no such file or directory')
            addr, port = command_values(goyaml.load(text), name, (addr_flag, "secure-port"))
        except (ValueError, yaml.YAMLError, AttributeError) as e:
            errors.append(str(e))
            continue
        host = addr or default_addr or ctx.cfg.advertise_address
        targets.append(_target(ctx, name, "https", host, port or str(default_port), endpoint))
    if errors:
        raise PermanentError("could not parse the address and port of all control plane components: "
                             + _aggregate(errors))
    return targets


# --- state across attempts ----------------------------------------------------------------------


@dataclass
class WaitState:
    kubelet_since: str = ""  # ISO time the kubelet wait started ("" = not yet)
    kubelet_done: bool = False
    cp_since: str = ""
    healthy: list[str] = field(default_factory=list)
    crb_done: bool = False

    @classmethod
    def load(cls, ctx: NodeContext) -> WaitState:
        raw = ctx.secrets.get(STATE_SECRET)
        return cls(**json.loads(raw)) if raw else cls()

    def save(self, ctx: NodeContext) -> None:
        ctx.secrets.put(STATE_SECRET, json.dumps(self.__dict__).encode())


def go_duration(seconds: float) -> str:
    """Go's time.Duration String for an elapsed time (``1.5s``, ``4m0.000771671s``, ``501.2ms``)."""
    if 0 < seconds < 1:
        return f"{seconds * 1000:.6f}".rstrip("0").rstrip(".") + "ms"
    return format_duration(round(seconds, 9))


def _aggregate(errors: list[str]) -> str:
    """apimachinery's utilerrors.Aggregate text."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def _poll(check: Callable[[], bool], window: float, sleep: Sleep) -> None:
    """``check`` at least once, again every POLL_INTERVAL while it is False and the window lasts."""
    end = time.monotonic() + window
    while not check() and time.monotonic() + POLL_INTERVAL < end:
        sleep(POLL_INTERVAL)


# --- the phase ----------------------------------------------------------------------------------


@dataclass
class Waiter:
    ctx: NodeContext
    clock: Clock
    sleep: Sleep
    window: float
    state: WaitState

    def since(self, iso: str) -> float:
        return (self.clock() - datetime.fromisoformat(iso)).total_seconds()

    def timeout(self, name: str) -> float:
        return self.ctx.cfg.init.timeouts.seconds(name)

    def kubelet(self) -> None:
        ctx, st = self.ctx, self.state
        target = kubelet_target(ctx)
        if target is None:
            ctx.log(KUBELET_CHECK, "Skipping the kubelet health check because the healthz port is set to 0")
            st.kubelet_done = True
            return
        if not st.kubelet_since:
            ctx.log(KUBELET_CHECK, f"Waiting for a healthy kubelet at {target.url}. This can take up to "
                    f"{format_duration(self.timeout('kubeletHealthCheck'))}")
            st.kubelet_since = self.clock().isoformat()
            st.save(ctx)
        last: list[health.ProbeResult] = []

        def check() -> bool:
            last[:] = [health.probe(target.probe_url, PROBE_TIMEOUT)]
            return last[0].ok

        _poll(check, self.window, self.sleep)
        elapsed = self.since(st.kubelet_since)
        if last[0].ok:
            ctx.log(KUBELET_CHECK, f"The kubelet is healthy after {go_duration(elapsed)}")
            st.kubelet_done = True
            return
        cause = last[0].error if last[0].status is None else f"status code: {last[0].status}"
        error = f"The HTTP call equal to 'curl -sSL {target.url}' returned {_kubelet_cause(cause)}"
        if elapsed >= self.timeout("kubeletHealthCheck"):
            ctx.log(KUBELET_CHECK, f"The kubelet is not healthy after {go_duration(elapsed)}")
            raise PermanentError(f"failed while waiting for the kubelet to start: {error}\n{KUBELET_FAIL_MSG}")
        raise TemporaryError(f"the kubelet is not healthy yet: {error}", RETRY_DELAY)

    def control_plane(self) -> None:
        ctx, st = self.ctx, self.state
        targets = control_plane_targets(ctx)
        if not st.cp_since:
            ctx.log(CP_CHECK, "Waiting for healthy control plane components. This can take up to "
                    f"{format_duration(self.timeout('controlPlaneComponentHealthCheck'))}")
            for t in targets:
                ctx.log(CP_CHECK, f"Checking {t.name} at {t.url}")
            st.cp_since = self.clock().isoformat()
            st.save(ctx)
        pending = [t for t in targets if t.name not in st.healthy]
        errors: dict[str, str] = {}
        cert = health.kubeconfig_client_cert(ctx.kubeconfig(c.ADMIN_CONF))

        def check() -> bool:
            probes = [health.Probe(t.probe_url, cert if t.name == c.KUBE_APISERVER else None) for t in pending]
            for t, r in zip(list(pending), health.probe_all(probes, PROBE_TIMEOUT), strict=True):
                if r.ok:
                    ctx.log(CP_CHECK, f"{t.name} is healthy after {go_duration(self.since(st.cp_since))}")
                    st.healthy.append(t.name)
                    pending.remove(t)
                    errors.pop(t.name, None)
                else:
                    errors[t.name] = _component_error(t, r)
            st.save(ctx)
            return not pending

        _poll(check, self.window, self.sleep)
        if not pending:
            return
        elapsed = self.since(st.cp_since)
        failed = [errors[t.name] for t in pending]
        if elapsed >= self.timeout("controlPlaneComponentHealthCheck"):
            for t in pending:
                ctx.log(CP_CHECK, f"{t.name} is not healthy after {go_duration(elapsed)}")
            help_text = CONTROL_PLANE_FAIL_TEMPLATE.format(socket=ctx.cfg.init.nodeRegistration.criSocket)
            raise PermanentError(f"failed while waiting for the control plane to start: {_aggregate(failed)}\n"
                                 f"{help_text}")
        raise TemporaryError(f"control plane components are not healthy yet: {_aggregate(failed)}", RETRY_DELAY)


def _kubelet_cause(cause: str) -> str:
    return cause if cause.startswith("status code") else f"error: {cause}"


def _component_error(t: Target, r: health.ProbeResult) -> str:
    if r.status is None:
        return f"{t.name} check failed at {t.url}: {r.error}"
    return f"{t.name} check failed at {t.url} with status: {r.status}"


# --- kubeadm:cluster-admins (kubeadm phases/kubeconfig EnsureAdminClusterRoleBindingImpl) ----------


def cluster_admins_binding() -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": c.CLUSTER_ADMINS_GROUP},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": c.CLUSTER_ADMINS_GROUP}],
    }


def _create_binding(ctx: NodeContext, conf: str) -> str:
    """Create the binding with ``conf``'s credentials: "created", "exists", "forbidden" or "missing"."""
    data = ctx.kubeconfig(conf)
    if data is None:
        return "missing"
    api = kubeapi.api_client(data)

    def create() -> str:
        try:
            kubeapi.request(api, "POST", kubeapi.object_path("ClusterRoleBinding"), cluster_admins_binding())
        except kubeapi.ApiException as e:
            # Forbidden is an answer here, not a hiccup: admin.conf's group has no rights until this
            # very binding exists.
            if e.status in (403, 409):
                return "forbidden" if e.status == 403 else "exists"
            raise
        return "created"

    return kubeapi.call(create, f"unable to create ClusterRoleBinding {c.CLUSTER_ADMINS_GROUP} with {conf}")


def ensure_cluster_admins_binding(ctx: NodeContext) -> None:
    """admin.conf first; on Forbidden the break-glass super-admin.conf; AlreadyExists is success."""
    log.debug("ensuring that the ClusterRoleBinding for the %s Group exists", c.CLUSTER_ADMINS_GROUP)
    outcome = _create_binding(ctx, c.ADMIN_CONF)
    if outcome == "missing":
        raise PermanentError(f'could not load "{c.KUBERNETES_DIR}/{c.ADMIN_CONF}": no such file or directory')
    if outcome != "forbidden":
        return
    log.debug("creating the ClusterRoleBinding for the %s Group by using %s", c.CLUSTER_ADMINS_GROUP,
              c.SUPER_ADMIN_CONF)
    outcome = _create_binding(ctx, c.SUPER_ADMIN_CONF)
    if outcome == "missing":
        raise PermanentError(f"the ClusterRoleBinding for the {c.CLUSTER_ADMINS_GROUP} Group is missing but "
                             f"there is no {c.SUPER_ADMIN_CONF} to create it")
    if outcome == "forbidden":
        raise PermanentError(f"unable to create the {c.CLUSTER_ADMINS_GROUP} ClusterRoleBinding by using "
                             f"{c.SUPER_ADMIN_CONF}: forbidden")


def wait_control_plane(ctx: NodeContext, *, clock: Clock, sleep: Sleep = time.sleep,
                       window: float = ATTEMPT_WINDOW) -> None:
    """One attempt of the phase (see the module docstring); ``clock`` decides the deadlines."""
    state = WaitState.load(ctx)
    if not state.kubelet_since and not state.kubelet_done:
        ctx.log(PHASE, "Waiting for the kubelet to boot up the control plane as static Pods from directory "
                f'"{c.MANIFESTS_DIR}"')
    waiter = Waiter(ctx, clock, sleep, window, state)
    if not state.kubelet_done:
        waiter.kubelet()
        state.save(ctx)
    if len(state.healthy) < len(c.CONTROL_PLANE_COMPONENTS):
        waiter.control_plane()
    if not state.crb_done:
        ensure_cluster_admins_binding(ctx)
        state.crb_done = True
        state.save(ctx)


def _now() -> datetime:
    return datetime.now(UTC)


def run_wait_control_plane(ctx: NodeContext) -> None:
    if ctx.cfg.init.dryRun:  # nothing was started: there is nothing to wait for
        return
    wait_control_plane(ctx, clock=_now)
