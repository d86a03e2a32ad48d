"""wait-control-plane: the health URLs read from the node's own files (kubelet configuration, static Pod
manifests made by kubeboot's control-plane phase), loopback mapped for sandbox nodes, kubeadm's lines
printed once, and the deadlines kept across attempts with frozen time (kubeadm-spec 2.7; kubeadm
util/apiclient/wait.go, cmd/phases/init/waitcontrolplane.go)."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks.errors import PermanentError, TemporaryError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import controlplane
from kubeboot.tasks.phases import waitcp as phase
from kubeboot.tasks.phases.context import MemorySecrets, NodeContext

V4 = "kubeadm.k8s.io/v1beta4"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
# The node's addresses moved to a loopback address nothing listens on: every check is refused at once.
NOWHERE = {"127.0.0.1": "127.0.93.7", "10.0.0.10": "127.0.93.7"}
KUBELET_ADDRESS = "127.0.93.8"


class FrozenClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def healthy_kubelet() -> Iterator[int]:
    """A plain HTTP /healthz answering ok, like the kubelet's."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer((KUBELET_ADDRESS, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def make_cfg(timeouts: dict[str, str] | None = None, **cluster: Any) -> InitConfig:
    init: dict[str, Any] = {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
                            "localAPIEndpoint": {"advertiseAddress": "10.0.0.10", "bindPort": 6443}}
    if timeouts:
        init["timeouts"] = timeouts
    return build_init_config([init, {"apiVersion": V4, "kind": "ClusterConfiguration", **cluster}])


def node(tmp_path: Path, cfg: InitConfig, kubelet: dict[str, Any] | None = None) -> NodeFS:
    """A node with kubeboot's control-plane manifests and a kubelet configuration."""
    fs = NodeFS(tmp_path)
    ctx = NodeContext(cfg, fs, out=lambda _line: None)
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        controlplane.run_control_plane(ctx, component)
    doc = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
           "healthzBindAddress": "127.0.0.1", "healthzPort": 10248, **(kubelet or {})}
    fs.write(KUBELET_CONFIG, yaml.safe_dump(doc))
    return fs


def context(fs: NodeFS, cfg: InitConfig, secrets: MemorySecrets | None = None,
            address_map: dict[str, str] | None = None) -> tuple[NodeContext, list[str]]:
    lines: list[str] = []
    return NodeContext(cfg, fs, out=lines.append, secrets=secrets or MemorySecrets(),
                       address_map=address_map or {}), lines


def attempt(ctx: NodeContext, clock: FrozenClock) -> None:
    phase.wait_control_plane(ctx, clock=clock, sleep=lambda _s: None, window=0)


# --- where to look ------------------------------------------------------------------------------------


def test_component_urls_come_from_the_generated_manifests_like_kubeadms(tmp_path: Path) -> None:
    cfg = make_cfg()
    ctx, _ = context(node(tmp_path, cfg), cfg)
    assert [(t.name, t.url) for t in phase.control_plane_targets(ctx)] == [
        ("kube-apiserver", "https://10.0.0.10:6443/livez"),
        ("kube-controller-manager", "https://127.0.0.1:10257/healthz"),
        ("kube-scheduler", "https://127.0.0.1:10259/livez"),
    ]


def test_loopback_is_probed_at_the_nodes_own_address_but_printed_as_kubeadm_prints_it(tmp_path: Path) -> None:
    cfg = make_cfg()
    ctx, _ = context(node(tmp_path, cfg), cfg, address_map={"127.0.0.1": "127.0.88.1"})
    targets = {t.name: t for t in phase.control_plane_targets(ctx)}
    kcm = targets["kube-controller-manager"]
    assert (kcm.url, kcm.probe_url) == ("https://127.0.0.1:10257/healthz", "https://127.0.88.1:10257/healthz")
    assert targets["kube-apiserver"].probe_url == "https://10.0.0.10:6443/livez"
    kubelet = phase.kubelet_target(ctx)
    assert kubelet is not None
    assert (kubelet.url, kubelet.probe_url) == ("http://127.0.0.1:10248/healthz", "http://127.0.88.1:10248/healthz")


def test_extra_args_moving_a_component_are_followed(tmp_path: Path) -> None:
    cfg = make_cfg(controllerManager={"extraArgs": [{"name": "bind-address", "value": "10.0.0.10"},
                                                    {"name": "secure-port", "value": "20257"}]})
    ctx, _ = context(node(tmp_path, cfg), cfg)
    urls = {t.name: t.url for t in phase.control_plane_targets(ctx)}
    assert urls["kube-controller-manager"] == "https://10.0.0.10:20257/healthz"


@pytest.mark.parametrize("command, expected", [
    pytest.param(["kube-scheduler", "--bind-address=10.1.1.1", "--secure-port=1234"], ["10.1.1.1", "1234"],
                 id="name=value flags"),
    pytest.param(["kube-scheduler", "-bind-address 10.1.1.1"], ["10.1.1.1", ""], id="single dash and a space"),
    pytest.param(["kube-scheduler", "--kubeconfig=/etc/kubernetes/scheduler.conf"], ["", ""],
                 id="flags absent: defaults apply"),
])
def test_address_and_port_flags_are_parsed_like_kubeadm(command: list[str], expected: list[str]) -> None:
    pod = {"spec": {"containers": [{"name": "kube-scheduler", "command": command}]}}
    assert phase.command_values(pod, "kube-scheduler", ("bind-address", "secure-port")) == expected


def test_kubelet_health_address_and_port_come_from_the_nodes_kubelet_configuration(tmp_path: Path) -> None:
    cfg = make_cfg()
    ctx, _ = context(node(tmp_path, cfg, {"healthzBindAddress": "10.0.0.10", "healthzPort": 11248}), cfg)
    target = phase.kubelet_target(ctx)
    assert target is not None and target.url == "http://10.0.0.10:11248/healthz"


def test_a_missing_manifest_is_a_permanent_error_naming_it(tmp_path: Path) -> None:
    cfg = make_cfg()
    fs = node(tmp_path, cfg)
    fs.remove("/etc/kubernetes/manifests/kube-scheduler.yaml")
    ctx, _ = context(fs, cfg)
    with pytest.raises(PermanentError, match=re.escape(
            "could not parse the address and port of all control plane components: failed to read manifest for "
            '"/etc/kubernetes/manifests/kube-scheduler.yaml"')):
        phase.control_plane_targets(ctx)


@pytest.mark.parametrize("seconds, text", [
    pytest.param(1.5, "1.5s", id="seconds"),
    pytest.param(240.000771671, "4m0.000771671s", id="minutes with nanoseconds"),
    pytest.param(0.5012, "501.2ms", id="under a second in milliseconds"),
])
def test_elapsed_times_read_like_go_durations(seconds: float, text: str) -> None:
    assert phase.go_duration(seconds) == text


# --- waiting across attempts --------------------------------------------------------------------------


def test_an_unhealthy_kubelet_is_temporary_and_kubeadms_lines_are_printed_once(tmp_path: Path) -> None:
    cfg, clock, secrets = make_cfg(), FrozenClock(), MemorySecrets()
    port = closed_port()
    fs = node(tmp_path, cfg, {"healthzPort": port})
    ctx, lines = context(fs, cfg, secrets)
    with pytest.raises(TemporaryError, match="connection refused") as e:
        attempt(ctx, clock)
    assert e.value.delay <= 2
    assert lines == [
        '[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from directory '
        '"/etc/kubernetes/manifests"',
        f"[kubelet-check] Waiting for a healthy kubelet at http://127.0.0.1:{port}/healthz. This can take up to 4m0s",
    ]
    clock.advance(60)
    ctx, lines = context(fs, cfg, secrets)
    with pytest.raises(TemporaryError):
        attempt(ctx, clock)
    assert lines == []


def test_the_kubelet_deadline_counts_from_the_first_attempt_and_ends_with_kubeadms_help(tmp_path: Path) -> None:
    cfg, clock, secrets = make_cfg({"kubeletHealthCheck": "40s"}), FrozenClock(), MemorySecrets()
    port = closed_port()
    fs = node(tmp_path, cfg, {"healthzPort": port})
    ctx, lines = context(fs, cfg, secrets)
    with pytest.raises(TemporaryError):
        attempt(ctx, clock)
    assert lines[-1].endswith("This can take up to 40s")
    clock.advance(39.5)
    with pytest.raises(TemporaryError):
        attempt(context(fs, cfg, secrets)[0], clock)
    clock.advance(0.75)
    ctx, lines = context(fs, cfg, secrets)
    with pytest.raises(PermanentError) as e:
        attempt(ctx, clock)
    assert lines == ["[kubelet-check] The kubelet is not healthy after 40.25s"]
    message = str(e.value)
    assert "- 'systemctl status kubelet'\n\t- 'journalctl -xeu kubelet'" in message
    url = f"http://127.0.0.1:{port}/healthz"
    assert message.startswith(f"failed while waiting for the kubelet to start: The HTTP call equal to 'curl -sSL "
                            f"{url}' returned error: Get \"{url}\": dial tcp 127.0.0.1:{port}: connect: connection "
                            "refused\n")


def test_a_healthy_kubelet_is_reported_once_then_the_components_are_checked(
        tmp_path: Path, healthy_kubelet: int) -> None:
    cfg, clock, secrets = make_cfg(), FrozenClock(), MemorySecrets()
    fs = node(tmp_path, cfg, {"healthzBindAddress": KUBELET_ADDRESS, "healthzPort": healthy_kubelet})
    mapping = NOWHERE
    ctx, lines = context(fs, cfg, secrets, mapping)
    clock_at_start = clock.now
    with pytest.raises(TemporaryError, match="control plane components are not healthy yet"):
        attempt(ctx, clock)
    assert clock.now == clock_at_start
    assert lines[2:] == [
        "[kubelet-check] The kubelet is healthy after 0s",
        "[control-plane-check] Waiting for healthy control plane components. This can take up to 4m0s",
        "[control-plane-check] Checking kube-apiserver at https://10.0.0.10:6443/livez",
        "[control-plane-check] Checking kube-controller-manager at https://127.0.0.1:10257/healthz",
        "[control-plane-check] Checking kube-scheduler at https://127.0.0.1:10259/livez",
    ]
    ctx, lines = context(fs, cfg, secrets, mapping)
    with pytest.raises(TemporaryError):
        attempt(ctx, clock)
    assert lines == []


def test_the_component_deadline_lists_each_unhealthy_one_and_the_crictl_help(tmp_path: Path) -> None:
    cfg = make_cfg({"controlPlaneComponentHealthCheck": "1m0s"})
    clock, secrets = FrozenClock(), MemorySecrets()
    fs = node(tmp_path, cfg, {"healthzPort": 0})
    mapping = NOWHERE
    ctx, lines = context(fs, cfg, secrets, mapping)
    with pytest.raises(TemporaryError):
        attempt(ctx, clock)
    assert lines[1] == "[kubelet-check] Skipping the kubelet health check because the healthz port is set to 0"
    clock.advance(61)
    ctx, lines = context(fs, cfg, secrets, mapping)
    with pytest.raises(PermanentError) as e:
        attempt(ctx, clock)
    assert lines == [f"[control-plane-check] {n} is not healthy after 1m1s"
                     for n in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")]
    message = str(e.value)
    assert ("- 'crictl --runtime-endpoint unix:///var/run/containerd/containerd.sock ps -a | grep kube | "
            "grep -v pause'") in message
    assert message.startswith("failed while waiting for the control plane to start: [kube-apiserver check failed at "
                              'https://10.0.0.10:6443/livez: Get "https://127.0.93.7:6443/livez"')
