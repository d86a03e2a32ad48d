"""The sandbox kubelet daemon, for real: static Pods as processes on the node's own loopback address,
restarted when they die or fail their liveness probe, replaced when the manifest changes, stopped when it
goes; adoption across a kubelet restart; two nodes side by side; nothing left after ``stop_all``."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from kubeboot.sandbox.kubelet import process
from kubeboot.sandbox.kubelet.driver import SandboxKubelet

pytestmark = pytest.mark.integration

T = TypeVar("T")
PORT = 18080
IMAGE = "sandbox.local/pyhttp:v1"
KUBELET_CONFIG = {
    "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
    "healthzBindAddress": "127.0.0.1", "healthzPort": 10248, "staticPodPath": "/etc/kubernetes/manifests",
}


def eventually(get: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll ``get`` until it returns something (a bounded wait for processes, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = get()
        if value is not None and value is not False:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def test_address(tmp_path: Path, n: int) -> str:
    """A loopback address of this test only: parallel tests and running sandboxes never share one."""
    h = zlib.crc32(str(tmp_path).encode())
    return f"127.79.{h % 250 + 1}.{(h >> 8) % 50 * 5 + n}"


test_address.__test__ = False  # type: ignore[attr-defined]


def web_pod(port: int = PORT, *, liveness_path: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "web", "image": IMAGE,
        "command": ["python3", "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        "env": [{"name": "GREETING", "value": "hello"}],
    }
    if liveness_path:
        container["livenessProbe"] = {"httpGet": {"host": "127.0.0.1", "path": liveness_path, "port": port},
                                      "periodSeconds": 1, "failureThreshold": 2}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "kube-system"},
            "spec": {"hostNetwork": True, "containers": [container]}}


class Node:
    def __init__(self, root: Path, name: str, address: str) -> None:
        self.root, self.name, self.address = root, name, address
        (root / "var/lib/kubelet").mkdir(parents=True)
        (root / "var/lib/kubelet/config.yaml").write_text(yaml.safe_dump(KUBELET_CONFIG))
        self.manifests = root / "etc/kubernetes/manifests"
        self.manifests.mkdir(parents=True)
        self.kubelet = SandboxKubelet(root, name, address, log_level="debug")
        self.lines: list[str] = []

    def write_manifest(self, pod: dict[str, Any], file: str = "web.yaml") -> None:
        tmp = self.manifests / f".{file}.tmp"
        tmp.write_text(yaml.safe_dump(pod))
        tmp.replace(self.manifests / file)  # atomically, as kubeadm writes manifests

    def status(self) -> dict[str, Any]:
        return json.loads((self.root / "var/lib/kubeboot-sandbox/pods.json").read_text())

    def pod(self, name: str = "web") -> dict[str, Any] | None:
        full = f"{name}-{self.name}"
        try:
            return next((p for p in self.status()["pods"] if p["name"] == full), None)
        except FileNotFoundError:
            return None

    def running(self, predicate: Callable[[dict[str, Any]], bool] = lambda _p: True) -> dict[str, Any]:
        def get() -> dict[str, Any] | None:
            p = self.pod()
            return p if p and p["state"] == "running" and predicate(p) else None
        return eventually(get, f"pod web running on {self.name}")

    def log(self) -> str:
        return (self.root / "var/lib/kubeboot-sandbox/kubelet.log").read_text()


def get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return None


def leftovers(node: Node, pids: list[int]) -> list[int]:
    return [pid for pid in pids if process.alive(pid)]


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[[str, int], Node]]:
    nodes: list[Node] = []

    def make(name: str, n: int = 1) -> Node:
        node = Node(tmp_path / name, name, test_address(tmp_path, n))
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.kubelet.stop_all()


def test_the_kubelet_serves_healthz_and_runs_a_static_pod_on_the_node_address(
        make_node: Callable[[str, int], Node]) -> None:
    node = make_node("n1", 1)
    node.write_manifest(web_pod())
    node.kubelet.start(node.lines.append)
    assert node.lines == []  # healthy in time: no warning
    assert node.kubelet.is_active()
    assert get(f"http://{node.address}:10248/healthz") == 200
    pod = node.running()
    assert pod["argv"][-3:] == ["--bind", node.address, str(PORT)]
    assert eventually(lambda: get(f"http://{node.address}:{PORT}/") == 200, "the pod answers on the node address")
    environ = dict(kv.split("=", 1) for kv in
                   Path(f"/proc/{pod['pid']}/environ").read_bytes().decode().split("\0") if "=" in kv)
    assert environ["GREETING"] == "hello"
    assert environ["KUBEBOOT_SANDBOX_DIR"] == str(node.root / "var/lib/kubeboot-sandbox")
    assert environ["KUBEBOOT_SANDBOX_VERSION"] == "v1"
    log = Path(pod["log"])
    assert log == node.root / f"var/log/pods/kube-system_web-n1_{pod['uid']}/web/0.log"
    assert eventually(lambda: "GET / HTTP" in log.read_text(), "the container's output in its log file")


def test_a_killed_pod_is_restarted_with_a_new_pid_and_one_restart(make_node: Callable[[str, int], Node]) -> None:
    node = make_node("n1", 1)
    node.write_manifest(web_pod())
    node.kubelet.start(node.lines.append)
    first = node.running()
    os.kill(first["pid"], signal.SIGKILL)
    second = node.running(lambda p: p["pid"] != first["pid"])
    assert second["restarts"] == 1
    assert second["lastState"]["exitCode"] == 128 + signal.SIGKILL
    assert second["uid"] == first["uid"]
    assert Path(second["log"]).name == "1.log"
    assert not process.alive(first["pid"])


def test_a_changed_manifest_replaces_the_pod_and_a_removed_one_stops_it(make_node: Callable[[str, int], Node]) -> None:
    node = make_node("n1", 1)
    node.write_manifest(web_pod(PORT))
    node.kubelet.start(node.lines.append)
    first = node.running()
    node.write_manifest(web_pod(PORT + 1))
    second = node.running(lambda p: p["uid"] != first["uid"])
    assert second["argv"][-1] == str(PORT + 1)
    assert second["restarts"] == 0  # a new manifest is a new Pod
    assert not process.alive(first["pid"])
    assert eventually(lambda: get(f"http://{node.address}:{PORT + 1}/") == 200, "the new pod answers")
    (node.manifests / "web.yaml").unlink()
    eventually(lambda: node.status()["pods"] == [], "the pod gone from the status")
    assert not process.alive(second["pid"])
    assert not (node.root / "var/lib/kubeboot-sandbox/pods/web-n1/pid").exists()


def test_a_failing_liveness_probe_restarts_the_container(make_node: Callable[[str, int], Node]) -> None:
    node = make_node("n1", 1)
    node.write_manifest(web_pod(liveness_path="/no-such-page"))  # http.server answers 404
    node.kubelet.start(node.lines.append)
    first = node.running()
    second = node.running(lambda p: p["restarts"] >= 1)
    assert second["pid"] != first["pid"]
    assert second["lastState"]["reason"].startswith("liveness probe failed 2 times")


def test_a_restarted_kubelet_adopts_its_running_pods_instead_of_starting_them_again(
        make_node: Callable[[str, int], Node]) -> None:
    node = make_node("n1", 1)
    node.write_manifest(web_pod())
    node.kubelet.start(node.lines.append)
    first = node.running()
    daemon = node.kubelet.daemon_pid()
    node.kubelet.stop(node.lines.append)
    assert not node.kubelet.is_active()
    assert process.alive(first["pid"])  # stopping the kubelet leaves its pods running
    node.kubelet.start(node.lines.append)
    assert node.kubelet.daemon_pid() not in (None, daemon)
    assert "adopted running pod web-n1" in eventually(
        lambda: node.log() if "adopted running pod web-n1" in node.log() else None, "adoption logged")
    again = node.running()
    assert (again["pid"], again["restarts"]) == (first["pid"], 0)


def test_two_nodes_on_different_addresses_run_the_same_pod_port_side_by_side(
        make_node: Callable[[str, int], Node]) -> None:
    a, b = make_node("n1", 1), make_node("n2", 2)
    for node in (a, b):
        node.write_manifest(web_pod())
        node.kubelet.start(node.lines.append)
    pa, pb = a.running(), b.running()
    for node in (a, b):
        assert eventually(lambda n=node: get(f"http://{n.address}:{PORT}/") == 200, f"web on {node.name}")
    assert pa["pid"] != pb["pid"]
    assert b.pod()["restarts"] == 0  # type: ignore[index]  # no port clash made it crash


def test_stop_all_leaves_no_process_of_the_node(make_node: Callable[[str, int], Node]) -> None:
    node = make_node("n1", 1)
    node.write_manifest(web_pod())
    node.write_manifest(web_pod(PORT + 1) | {"metadata": {"name": "web2", "namespace": "kube-system"}}, "web2.yaml")
    node.kubelet.start(node.lines.append)
    node.running()
    eventually(lambda: len(node.kubelet.pod_pids()) == 2, "both pods started")
    pids = [node.kubelet.daemon_pid() or 0, *node.kubelet.pod_pids().values()]
    assert len(leftovers(node, pids)) == 3
    node.kubelet.stop_all()
    assert leftovers(node, pids) == []
    assert not node.kubelet.is_active()
