"""Exactly-once join and cluster runs under at-least-once delivery, end to end: real control worker, the
real broker, a ``--dry-run`` cluster (no machine needed: a dry run's node phases, init and joins alike,
run on the control worker from the ``dry-run`` queue, into a temporary root per node).

A cluster of two control-plane nodes and two workers is an init, a control-plane join (etcd-join and
mark-control-plane included), two worker joins started as one Celery group, and the cluster's own
``advance`` and ``ready`` tasks. With every message delivered twice (the first one copied in its queue,
every later one published twice by the worker: ``faults.py`` ``duplicate-publish``), or the worker's
pool child, or the whole worker, SIGKILLed between "phase recorded succeeded" and the ack: each phase of
the init and of each join runs its action once (counted per workflow, node and phase by the fault
harness), each child run and the cluster run finish once, no child run is created twice, and every phase
copy that must not go on ends IGNORED as Flower shows it (``celery.events.state.State``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

API = "kubeboot.dev/v1alpha1"
QUEUE = "dry-run"  # every task of a dry run, the cluster's own included


def cluster_doc(name: str, control_planes: int, workers: int) -> dict[str, Any]:
    nodes = [{"name": f"{name}-cp{i}", "address": f"10.2.0.{i}", "role": "control-plane",
              "ignorePreflightErrors": ["all"]} for i in range(1, control_planes + 1)]
    nodes += [{"name": f"{name}-w{i}", "address": f"10.2.1.{i}", "role": "worker",
               "ignorePreflightErrors": ["all"]} for i in range(1, workers + 1)]
    return {"apiVersion": API, "kind": "Cluster", "metadata": {"name": name},
            "spec": {"clusterConfiguration": {"encryptionAlgorithm": "ECDSA-P256",
                                              "controlPlaneEndpoint": "10.2.0.254:6443"},
                     "nodes": nodes}}


def submit_cluster(engine: Any, doc: dict[str, Any]) -> str:
    """``kubeboot submit cluster --dry-run`` without waiting; the cluster run's id."""
    path = engine.dir / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = engine.cli("submit", "cluster", "-f", str(path), "--dry-run", "-o", "json")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return str(json.loads(result.stdout)["cluster"]["id"])


def control_worker(engine: Any, concurrency: int) -> None:
    """The control worker (it consumes ``dry-run``) with the test's faults; with two pool children, the
    two copies of a message run side by side."""
    engine.spawn("control", "worker", "control", "--concurrency", str(concurrency), "--include", "faults",
                 faults=True)


def deliver_queued_message_twice(client: Any, queue: str) -> None:
    """Copy the one message waiting in ``queue`` (kombu's Redis list), under a delivery tag of its own."""
    (raw,) = client.lrange(queue, 0, -1)
    message = json.loads(raw)
    message["properties"]["delivery_tag"] = str(uuid.uuid4())
    client.lpush(queue, json.dumps(message))


def counts_of(directory: Path) -> dict[str, int]:
    return {p.name: int(p.read_text()) for p in directory.iterdir()}


def assert_each_phase_ran_once(engine: Any, cluster_id: str, counts: Path,
                               restarted: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
                               ) -> dict[str, list[str]]:
    """Every child run of the cluster ran each of its phases' actions once and finished once; the runs
    are exactly the cluster and one child per node. A ``restarted`` (node, phase) was started by a copy
    that died before its action: it starts twice and still runs once. Returns each child's phases that ran."""
    run = engine.store.get_run(cluster_id)
    assert run.status == "succeeded", engine.logs()
    kids = {node: f"{cluster_id}.{node}" for node, _step in run.plan}
    assert sorted(r.id for r in engine.store.list_runs()) == sorted([cluster_id, *kids.values()])
    assert [e.event for e in engine.store.events(cluster_id) if e.is_run_event].count("succeeded") == 1

    ran: dict[str, list[str]] = {}
    expected: dict[str, int] = {}
    for node, kid in kids.items():
        child = engine.store.get_run(kid)
        assert (child.status, child.parent) == ("succeeded", cluster_id)
        records = engine.store.phase_records(kid)
        ran[node] = [r.path for r in records if r.status == "succeeded"]
        assert ran[node], kid
        events = engine.store.events(kid)
        for path in ran[node]:
            starts = 2 if (node, path) in restarted else 1
            assert [e.event for e in events if e.phase == path] == ["started"] * starts + ["succeeded"], (kid, path)
            assert next(r for r in records if r.path == path).attempts == starts, (kid, path)
            expected[f"{child.kind}.{node}.{path.replace('/', '_')}"] = 1
        assert [e.event for e in events if e.is_run_event] == ["submitted", "succeeded"], kid
    assert counts_of(counts) == expected
    return ran


def test_every_message_of_a_dry_run_cluster_delivered_twice_runs_each_phase_once(engine: Any, tmp_path: Path) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    engine.faults = [{"kind": "duplicate-publish"},
                     {"kind": "count", "phase": "*", "workflow": "*", "dir": str(counts), "per_node": True}]
    engine.start_redis()
    cluster_id = submit_cluster(engine, cluster_doc("dup", 2, 2))  # no worker yet: its advance waits
    deliver_queued_message_twice(engine.client(), QUEUE)
    events = engine.task_events()
    try:
        control_worker(engine, concurrency=2)
        assert engine.wait_run(cluster_id) == "succeeded", engine.logs()
        ran = assert_each_phase_ran_once(engine, cluster_id, counts)
        assert "etcd-join" in ran["dup-cp2"] and "control-plane-join/mark-control-plane" in ran["dup-cp2"]
        assert "kubelet-wait-bootstrap" in ran["dup-w2"] and "certs/ca" in ran["dup-cp1"]

        # Every phase's second copy ended IGNORED (some after waiting for the first copy's lease); none failed.
        phases = {f"kubeboot.{'init' if node == 'dup-cp1' else 'join'}.{p.replace('/', '.')}"
                  for node, paths in ran.items() for p in paths}
        engine.wait_for("every phase's second copy to be ignored",
                        lambda: phases | {"kubeboot.run.finish"} <= events.names_with("task-ignored"))
        assert events.names_with("task-failed") == set()
        assert {"kubeboot.cluster.advance", "kubeboot.cluster.ready"} <= events.names_with("task-succeeded")
        assert_each_phase_ran_once(engine, cluster_id, counts)  # still once each, with every copy ended
    finally:
        events.close()


def test_a_pool_child_killed_after_a_join_phase_recorded_success_runs_no_phase_twice(
    engine: Any, tmp_path: Path
) -> None:
    counts, killed = tmp_path / "counts", tmp_path / "killed"
    counts.mkdir()
    engine.faults = [{"kind": "count", "phase": "*", "workflow": "*", "dir": str(counts), "per_node": True},
                     {"kind": "kill-after-success", "phase": "etcd-join", "node": "kid-cp2", "flag": str(killed)}]
    engine.start_redis()
    control_worker(engine, concurrency=2)
    cluster_id = submit_cluster(engine, cluster_doc("kid", 2, 1))

    # The message comes back at once (reject_on_worker_lost); its copy finds etcd-join succeeded and its
    # successor never sent, waits for the dead copy's lease to lapse, then sends it.
    assert engine.wait_run(cluster_id) == "succeeded", engine.logs()
    assert killed.exists()
    ran = assert_each_phase_ran_once(engine, cluster_id, counts)
    assert "etcd-join" in ran["kid-cp2"]


def test_the_whole_worker_killed_after_a_join_phase_recorded_success_and_restarted_finishes_the_cluster(
    engine: Any, tmp_path: Path
) -> None:
    """w1's kubelet-start records its success and the whole worker dies before the ack, while w2's join
    waits on the other pool child in preflight, before its action (a barrier). Restarted with the same
    command line, the worker finishes both joins: w2's preflight starts a second time and runs once."""
    counts, killed, w1_gate, w2_gate = (tmp_path / n for n in ("counts", "killed", "w1-gate", "w2-gate"))
    counts.mkdir()
    engine.faults = [{"kind": "count", "phase": "*", "workflow": "*", "dir": str(counts), "per_node": True},
                     {"kind": "barrier", "phase": "kubelet-start", "workflow": "join", "node": "all-w1",
                      "dir": str(w1_gate)},
                     {"kind": "barrier", "phase": "preflight", "workflow": "join", "node": "all-w2",
                      "dir": str(w2_gate)},
                     {"kind": "kill-after-success", "phase": "kubelet-start", "node": "all-w1", "flag": str(killed),
                      "whole": True}]
    assert "KUBEBOOT_VISIBILITY_TIMEOUT" not in engine.env  # 600 s: the broker gives nothing back in this test
    engine.start_redis()
    control_worker(engine, concurrency=2)
    cluster_id = submit_cluster(engine, cluster_doc("all", 1, 2))
    engine.wait_for("both joins at their gates", lambda: (w1_gate / "reached").exists() and (
        w2_gate / "reached").exists())
    (w1_gate / "release").touch()
    engine.wait_for("the control worker to kill itself", lambda: engine.procs["control"].poll() is not None)
    engine.procs.pop("control").wait()
    w1, w2 = f"{cluster_id}.all-w1", f"{cluster_id}.all-w2"
    assert (engine.phase(w1, "kubelet-start", "all-w1").status,
            engine.phase(w1, "kubelet-wait-bootstrap", "all-w1").status,
            engine.phase(w2, "preflight", "all-w2").status) == ("succeeded", "pending", "running")

    (w2_gate / "release").touch()
    control_worker(engine, concurrency=2)  # the same command line, as systemd would
    assert engine.wait_run(cluster_id) == "succeeded", engine.logs()
    assert_each_phase_ran_once(engine, cluster_id, counts, restarted={("all-w2", "preflight")})
