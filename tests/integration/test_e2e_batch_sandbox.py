"""A batch of 4 sandbox clusters (1 control plane + 1 worker each), end to end through the installed CLI:
the node worker of one cluster's worker node is killed and stopped on purpose (the sandbox's supervisor
leaves it dead), so 3 clusters succeed and 1 fails with a message naming the node and its queue (the
engine's "no worker consumes" detection, bounded by the cluster's spec.timeouts.nodeWorker). The worker
started again and the batch resumed: 4 of 4, the 3 others untouched. Read back as a user would: every
Node Ready through the official client, `status BATCH` and `runs --batch`.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

pytestmark = pytest.mark.integration

CLUSTERS = ("sb1", "sb2", "sb3", "sb4")
VICTIM, VICTIM_CLUSTER = "sb3-w1", "sb3"
DEADLINE = "720s"  # a bound for --wait on a busy shared machine, never an assertion


@dataclass
class Batch:
    box: Any
    first: dict[str, Any] = field(default_factory=dict)
    first_code: int = -1
    resumed: dict[str, Any] = field(default_factory=dict)
    resumed_code: int = -1

    @property
    def id(self) -> str:
        return str(self.first["batch"]["id"])


def _batch_file(box: Any) -> Path:
    """The sandbox's batch.yaml with a short wait for absent workers (spec.timeouts.nodeWorker)."""
    doc = yaml.safe_load(Path(box.record()["batch"]).read_text())
    for cluster in doc["spec"]["clusters"]:
        cluster["spec"]["timeouts"] = {"nodeWorker": "20s"}
    path = box.dir / "batch.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, e2e: Any) -> Iterator[Batch]:
    from kubeboot.sandbox.supervise import start_unit, stop_unit

    box = e2e.SandboxCluster(tmp_path_factory.mktemp("e2e-batch"))
    try:
        box.up("--clusters", "4", "--control-planes", "1", "--workers", "1")
        stop_unit(box.sandbox_dir, f"node-worker-{VICTIM}", signal.SIGKILL)  # killed, and left dead
        result = box.cli("submit", "batch", "-f", str(_batch_file(box)), "--concurrency", "4", "--wait",
                         "--timeout", DEADLINE, "-o", "json")
        b = Batch(box, json.loads(result.stdout or "{}"), result.returncode)
        assert b.first, f"{result.stderr}\n{box.logs()}"
        start_unit(box.sandbox_dir, f"node-worker-{VICTIM}")
        box.wait_for(f"a worker consuming node.{VICTIM}",
                     lambda: box.client().get(f"kubeboot:queue:node.{VICTIM}:consumer") is not None, deadline=120)
        again = box.cli("resume", b.id, "--wait", "--timeout", DEADLINE, "-o", "json")
        b.resumed, b.resumed_code = json.loads(again.stdout or "{}"), again.returncode
        assert b.resumed, f"{again.stderr}\n{box.logs()}"
        yield b
    finally:
        e2e.stop_sandbox(box)


def _rows(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["cluster"]: r for r in view["clusters"]}


def test_three_clusters_succeed_beside_the_one_whose_worker_is_dead(batch: Batch) -> None:
    assert batch.first_code == 1
    assert {c: r["status"] for c, r in _rows(batch.first).items()} == {
        "sb1": "succeeded", "sb2": "succeeded", "sb3": "failed", "sb4": "succeeded"}
    assert batch.first["batch"]["status"] == "failed"
    assert batch.first["batch"]["error"].startswith("1 of 4 clusters failed: sb3")


def test_the_failed_cluster_names_the_node_and_its_queue(batch: Batch) -> None:
    error = _rows(batch.first)[VICTIM_CLUSTER]["error"]
    assert f"join of node {VICTIM} failed: no worker consumes node.{VICTIM}" in error
    assert "spec.timeouts.nodeWorker" in error
    assert _rows(batch.first)[VICTIM_CLUSTER]["nodes"] == {"done": 1, "total": 2}


def test_the_resumed_batch_ends_with_four_of_four(batch: Batch) -> None:
    assert batch.resumed_code == 0
    assert batch.resumed["batch"]["status"] == "succeeded"
    assert {c: (r["status"], r["nodes"]) for c, r in _rows(batch.resumed).items()} == {
        c: ("succeeded", {"done": 2, "total": 2}) for c in CLUSTERS}
    assert batch.resumed["batch"]["totals"]["nodesDone"] == 8


def test_the_resume_touched_only_the_failed_cluster(batch: Batch) -> None:
    store = batch.box.store
    for name in CLUSTERS:
        events = [e.event for e in store.events(f"{batch.id}.{name}")]
        assert ("resumed" in events) is (name == VICTIM_CLUSTER), name
    kid = f"{batch.id}.{VICTIM_CLUSTER}.{VICTIM}"
    assert [e.event for e in store.events(kid) if not e.phase] == ["submitted", "failed", "resumed", "succeeded"]
    init = f"{batch.id}.{VICTIM_CLUSTER}.{VICTIM_CLUSTER}-cp1"
    assert "resumed" not in [e.event for e in store.events(init)]


def test_every_node_of_every_cluster_is_ready_through_the_official_client(batch: Batch) -> None:
    for name in CLUSTERS:
        api = batch.box.api(f"{name}-cp1")
        nodes = {n.metadata.name: n for n in client.CoreV1Api(api).list_node().items}
        assert sorted(nodes) == [f"{name}-cp1", f"{name}-w1"]
        for node in nodes.values():
            assert [c.status for c in node.status.conditions if c.type == "Ready"] == ["True"]


def test_runs_lists_the_batch_its_clusters_and_their_children(batch: Batch) -> None:
    listed = batch.box.cli("runs", "--batch", batch.id, "-o", "json")
    ids = sorted(r["id"] for r in json.loads(listed.stdout))
    expected = [batch.id, *(f"{batch.id}.{c}" for c in CLUSTERS),
                *(f"{batch.id}.{c}.{c}-{n}" for c in CLUSTERS for n in ("cp1", "w1"))]
    assert ids == sorted(expected)
    text = batch.box.cli("status", batch.id).stdout
    assert "4/4 clusters ended (4 succeeded, 0 failed, 0 running, 0 pending), 8/8 nodes" in text
