"""`kubeboot sandbox up --nodes 2 --clusters 2`, `sandbox status`, `sandbox down` (issue 4): node names,
loopback addresses and queues printed and shown, and nothing left running afterwards — neither a process
``sandbox.json`` or the supervisor records, nor a kubelet or static pod the node roots' pid files name,
nor any other process started with the sandbox's state dir. ``--nodes N`` is one control plane and N-1
workers (``<cluster>-w<k>``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubeboot.sandbox.addresses import RESERVATIONS_DIR

pytestmark = pytest.mark.integration

# (node, cluster, node number, queue, role)
NODES = [
    ("sb1-cp1", 0, 1, "node.sb1-cp1", "control-plane"),
    ("sb1-w1", 0, 2, "node.sb1-w1", "worker"),
    ("sb2-cp1", 1, 1, "node.sb2-cp1", "control-plane"),
    ("sb2-w1", 1, 2, "node.sb2-w1", "worker"),
]


def _expected(indices: list[int]) -> list[tuple[str, str, str, str]]:
    """(node, address, queue, role): node k of a cluster lives on 127.77.<its reserved block>.<k>."""
    return [(name, f"127.77.{indices[c]}.{k}", queue, role) for name, c, k, queue, role in NODES]


def _start_ticks(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/<pid>/stat): a pid reused later is not the same process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _pid_files(sandbox_dir: Path) -> dict[str, int]:
    """Every kubelet and pod pid file under the node roots: path -> pid."""
    files = [*sandbox_dir.glob("*/*/var/lib/kubeboot-sandbox/kubelet.pid"),
             *sandbox_dir.glob("*/*/var/lib/kubeboot-sandbox/pods/*/pid")]
    return {str(p.relative_to(sandbox_dir)): int(p.read_text().strip()) for p in files}


def _started_with(state_dir: Path) -> set[int]:
    """Live processes whose environment names this state dir: everything the sandbox started inherits it."""
    marker = f"KUBEBOOT_STATE_DIR={state_dir}".encode()
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0") and _start_ticks(int(environ.parent.name)):
                found.add(int(environ.parent.name))
        except OSError:
            continue  # exited while we looked, or not ours to read
    return found


def test_sandbox_up_status_and_down_for_two_clusters_of_two_nodes_leave_no_process(sandbox: Any) -> None:
    up = sandbox.up("--nodes", "2", "--clusters", "2")
    record = sandbox.record()
    indices = record["indices"]  # blocks reserved machine-wide: other sandboxes may hold the first ones
    assert len(set(indices)) == 2
    nodes = _expected(indices)
    printed = {tuple(line.split()[:3]) for line in up.stdout.splitlines()}
    for name, address, queue, _role in nodes:
        assert (name, address, queue) in printed
    for cluster in ("sb1", "sb2"):
        assert f"kubeboot submit init --config {sandbox.sandbox_dir / cluster / 'kubeadm.yaml'}" in up.stdout

    assert [(n["name"], n["address"], n["queue"], n["role"]) for n in record["nodes"]] == nodes
    doc = json.loads(sandbox.cli("sandbox", "status", "-o", "json").stdout)
    rows = doc["nodes"]
    assert [(r["node"], r["address"], r["queue"], r["role"], r["worker"], r["kubelet"]) for r in rows] == [
        (*n, True, True) for n in nodes]
    # One control plane each: no load balancer, the endpoint is the node's own address.
    assert [(c["name"], c["endpoint"], c["loadBalancer"]) for c in doc["clusters"]] == [
        ("sb1", f"127.77.{indices[0]}.1:6443", None), ("sb2", f"127.77.{indices[1]}.1:6443", None)]
    text = sandbox.cli("sandbox", "status").stdout.splitlines()
    for name, address, queue, role in nodes:
        assert [name, role, address, queue, "up", "up"] in [line.split()[:6] for line in text]

    sandbox.init()  # cluster sb1: its first node gets static pods (real etcd, emulated control plane)
    pid_files = _pid_files(sandbox.sandbox_dir)
    assert {k for k in pid_files if "/pods/" in k} == {
        f"sb1/sb1-cp1/var/lib/kubeboot-sandbox/pods/{c}-sb1-cp1/pid"
        for c in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")}
    assert len([k for k in pid_files if k.endswith("kubelet.pid")]) == len(nodes)
    supervised = json.loads((sandbox.sandbox_dir / "supervise-state.json").read_text())
    recorded = [record["control_pid"], *(n["worker_pid"] for n in record["nodes"]), *pid_files.values(),
                record["supervisor_pid"], *(u["pid"] for u in supervised["units"].values())]
    with_env = _started_with(sandbox.state_dir)
    assert set(recorded) < with_env  # the scan sees them all, and more (pool children, the embedded Redis)
    started = {pid: _start_ticks(pid) for pid in {*recorded, *with_env}}
    assert all(started[pid] for pid in recorded), "a recorded process is not running before down"

    down = sandbox.down()
    assert down.returncode == 0, down.stderr
    assert "no process left" in down.stdout
    left = {pid for pid, ticks in started.items() if ticks and _start_ticks(pid) == ticks}
    assert left == set()
    assert _started_with(sandbox.state_dir) == set()
    doc = json.loads(sandbox.cli("sandbox", "status", "-o", "json").stdout)
    assert {(r["worker"], r["kubelet"]) for r in doc["nodes"]} == {(False, False)}
    assert doc["supervisor"]["up"] is False
    for index in indices:  # the address blocks are free again
        reservation = Path(RESERVATIONS_DIR) / f"127.77.{index}"
        assert not reservation.exists() or reservation.read_text().strip() != str(sandbox.sandbox_dir)
