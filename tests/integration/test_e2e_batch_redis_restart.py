"""A sandbox batch (2 clusters, 1 control plane + 1 worker each) interrupted by a restart of its Redis (the
broker and the run state) in the middle of its clusters' inits: once Redis is back, the batch goes on (or,
if the outage failed it, `kubeboot resume` takes it on) and ends with both clusters up, nothing done twice:
every phase of every run recorded succeeded once, one cluster run per cluster and one child run per node.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

pytestmark = pytest.mark.integration

CLUSTERS = ("sb1", "sb2")
DEADLINE = 600.0  # bounds of the waits on a busy shared machine, never assertions
OUTAGE = 3.0


def _in_the_middle(box: Any, batch_id: str) -> bool:
    """Some cluster's init is well under way (its first phases done, the run going on)."""
    for name in CLUSTERS:
        run = box.store.get_run(f"{batch_id}.{name}.{name}-cp1")
        if run is not None and run.status == "running":
            done = [r for r in box.store.phase_records(run.id) if r.status == "succeeded"]
            if len(done) >= 8:
                return True
    return False


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory, e2e: Any) -> Iterator[dict[str, Any]]:
    box = e2e.SandboxCluster(tmp_path_factory.mktemp("e2e-batch-redis"))
    try:
        box.up("--clusters", "2", "--control-planes", "1", "--workers", "1")
        submitted = box.cli("submit", "batch", "-f", box.record()["batch"], "--concurrency", "2", "-o", "json")
        assert submitted.returncode == 0, f"{submitted.stderr}\n{box.logs()}"
        batch_id = json.loads(submitted.stdout)["batch"]["id"]
        box.wait_for("an init in the middle of its phases", lambda: _in_the_middle(box, batch_id), deadline=DEADLINE)
        assert box.embedded().stop()  # SIGTERM: Redis writes its AOF and exits
        time.sleep(OUTAGE)
        box.start_redis()
        box.wait_for("the batch to end", lambda: box.store.run_status(batch_id) in ("succeeded", "failed"),
                     deadline=DEADLINE)
        resumed = box.store.run_status(batch_id) == "failed"
        if resumed:
            again = box.cli("resume", batch_id, "--wait", "--timeout", f"{DEADLINE:.0f}s", "-o", "json")
            assert again.stdout, f"{again.stderr}\n{box.logs()}"
        final = box.cli("status", batch_id, "-o", "json")
        yield {"box": box, "id": batch_id, "view": json.loads(final.stdout), "resumed": resumed}
    finally:
        e2e.stop_sandbox(box)


def test_the_batch_ends_with_both_clusters_up(restarted: dict[str, Any]) -> None:
    view = restarted["view"]
    assert view["batch"]["status"] == "succeeded", restarted["box"].logs()
    assert {r["cluster"]: r["status"] for r in view["clusters"]} == dict.fromkeys(CLUSTERS, "succeeded")
    for name in CLUSTERS:
        nodes = client.CoreV1Api(restarted["box"].api(f"{name}-cp1")).list_node().items
        assert sorted(n.metadata.name for n in nodes) == [f"{name}-cp1", f"{name}-w1"]


def test_one_cluster_run_per_cluster_and_one_child_run_per_node(restarted: dict[str, Any]) -> None:
    batch_id, box = restarted["id"], restarted["box"]
    listed = json.loads(box.cli("runs", "--batch", batch_id, "-o", "json").stdout)
    assert sorted(r["id"] for r in listed) == sorted([batch_id, *(f"{batch_id}.{c}" for c in CLUSTERS),
                                                      *(f"{batch_id}.{c}.{c}-{n}" for c in CLUSTERS
                                                        for n in ("cp1", "w1"))])


def test_every_phase_of_every_run_succeeded_once(restarted: dict[str, Any]) -> None:
    batch_id, store = restarted["id"], restarted["box"].store
    for name in CLUSTERS:
        for node in ("cp1", "w1"):
            kid = f"{batch_id}.{name}.{name}-{node}"
            succeeded = collections.Counter((e.node, e.phase) for e in store.events(kid)
                                            if e.phase and e.event == "succeeded")
            planned = {(r.node, r.path) for r in store.phase_records(kid) if r.status == "succeeded"}
            assert set(succeeded) == planned and set(succeeded.values()) == {1}, kid
