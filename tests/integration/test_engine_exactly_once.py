"""Exactly-once phases under at-least-once delivery, end to end: real workers, the real broker.

Every message of a run delivered twice (the first one copied in its queue, every later one published
twice by the workers: ``faults.py`` ``duplicate-publish``), a pool child or a whole worker SIGKILLed
between "phase recorded succeeded" and its ack: each phase's action runs once (counted by the fault
harness), the run finishes once, and every copy that must not go on ends IGNORED. A phase out of
attempts ends FAILURE and the chain stops there. Task events are read as Flower reads them
(``celery.events.state.State``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

NODE_QUEUE = "node.cp1"


def _counts(directory: Path) -> dict[str, int]:
    return {p.name: int(p.read_text()) for p in directory.iterdir()}


def _task_name(path: str) -> str:
    return f"kubeboot.init.{path.replace('/', '.')}"


def _ran(engine: Any, run_id: str) -> list[str]:
    return [r.path for r in engine.store.phase_records(run_id) if r.status == "succeeded"]


def _deliver_queued_message_twice(client: Any, queue: str) -> None:
    """Copy the one message waiting in ``queue`` (kombu's Redis list), under a delivery tag of its own."""
    (raw,) = client.lrange(queue, 0, -1)
    message = json.loads(raw)
    message["properties"]["delivery_tag"] = str(uuid.uuid4())
    client.lpush(queue, json.dumps(message))


def _workers(engine: Any, concurrency: int) -> None:
    """The node and control workers with the test's faults, ``concurrency`` pool children each: with two,
    the two copies of a message run side by side."""
    engine.spawn("node", "worker", "node", "--id", "cp1", "--root", str(engine.root), "--concurrency",
                 str(concurrency), "--include", "faults", faults=True)
    engine.spawn("control", "worker", "control", "--concurrency", str(concurrency), "--include", "faults",
                 faults=True)


def _assert_each_phase_ran_once(engine: Any, run_id: str, counts: Path) -> list[str]:
    ran = _ran(engine, run_id)
    assert "certs/ca" in ran and "kubelet-start" in ran
    assert _counts(counts) == {p.replace("/", "_"): 1 for p in ran}
    events = engine.store.events(run_id)
    for path in ran:
        assert [e.event for e in events if e.phase == path] == ["started", "succeeded"], path
        assert engine.phase(run_id, path).attempts == 1, path
    assert [e.event for e in events if e.is_run_event] == ["submitted", "succeeded"]
    return ran


def test_every_message_delivered_twice_runs_each_phase_once_and_finishes_the_run_once(
    engine: Any, tmp_path: Path
) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    engine.faults = [{"kind": "duplicate-publish"}, {"kind": "count", "phase": "*", "dir": str(counts)}]
    engine.start_redis()
    run_id = engine.submit(engine.config())  # no worker yet: its first message waits in the node's queue
    _deliver_queued_message_twice(engine.client(), NODE_QUEUE)
    events = engine.task_events()
    try:
        _workers(engine, concurrency=2)
        assert engine.wait_run(run_id) == "succeeded", engine.logs()
        ran = _assert_each_phase_ran_once(engine, run_id, counts)

        # Every second copy ended IGNORED (some after waiting for the first copy's lease); none failed.
        expected = {_task_name(p) for p in ran} | {"kubeboot.run.finish"}
        engine.wait_for("every phase's second copy to be ignored",
                        lambda: expected <= events.names_with("task-ignored"))
        assert events.names_with("task-failed") == set()
        assert _counts(counts) == {p.replace("/", "_"): 1 for p in ran}  # still once each

        # A copy delivered after the run ended (the visibility timeout's redelivery): IGNORED in Flower.
        run = engine.store.get_run(run_id)
        auth = engine.store.signer(run)(_task_name("certs/ca"), "cp1", NODE_QUEUE)  # a signed copy, as redelivered
        late = events.app.send_task(_task_name("certs/ca"), args=(run_id, "cp1"), kwargs={"auth": auth},
                                    queue=NODE_QUEUE)
        engine.wait_for("the late copy to end", lambda: events.flower_state(late.id) == "IGNORED")
        assert (counts / "certs_ca").read_text() == "1"
    finally:
        events.close()


def test_a_pool_child_killed_after_recording_success_and_before_its_ack_runs_no_phase_twice(
    engine: Any, tmp_path: Path
) -> None:
    counts, killed = tmp_path / "counts", tmp_path / "killed"
    counts.mkdir()
    engine.faults = [{"kind": "count", "phase": "*", "dir": str(counts)},
                     {"kind": "kill-after-success", "phase": "certs/ca", "flag": str(killed)}]
    engine.start_redis()
    _workers(engine, concurrency=1)
    run_id = engine.submit(engine.config())

    # The message comes back at once (reject_on_worker_lost); its copy finds certs/ca succeeded and its
    # successor never sent, waits for the dead copy's lease to lapse, then sends it.
    assert engine.wait_run(run_id) == "succeeded", engine.logs()
    assert killed.exists()
    _assert_each_phase_ran_once(engine, run_id, counts)


def test_a_whole_worker_killed_after_recording_success_and_restarted_continues_the_run_without_the_broker(
    engine: Any, tmp_path: Path
) -> None:
    counts, killed = tmp_path / "counts", tmp_path / "killed"
    counts.mkdir()
    engine.faults = [{"kind": "count", "phase": "*", "dir": str(counts)},
                     {"kind": "kill-after-success", "phase": "certs/ca", "flag": str(killed), "whole": True}]
    assert "KUBEBOOT_VISIBILITY_TIMEOUT" not in engine.env  # 600 s: the broker gives nothing back in this test
    engine.start_redis()
    _workers(engine, concurrency=1)
    run_id = engine.submit(engine.config())
    engine.wait_for("the node worker to kill itself", lambda: engine.procs["node"].poll() is not None)
    engine.procs.pop("node").wait()
    assert (engine.phase(run_id, "certs/ca").status, engine.phase(run_id, "certs/apiserver").status) == (
        "succeeded", "pending")

    engine.start_node()  # the same command line, as systemd would
    assert engine.wait_run(run_id) == "succeeded", engine.logs()
    _assert_each_phase_ran_once(engine, run_id, counts)


def test_a_phase_out_of_attempts_ends_as_failure_and_its_chain_goes_no_further(engine: Any, tmp_path: Path) -> None:
    engine.faults = [{"kind": "temporary", "phase": "kubeconfig/admin", "times": 99,
                      "counter": str(tmp_path / "calls")}]
    engine.start_redis()
    events = engine.task_events()
    try:
        engine.start_workers()
        run_id = engine.submit(engine.config())
        assert engine.wait_run(run_id) == "failed", engine.logs()

        message = "giving up after 12 attempts: injected temporary failure 12 of 99"
        record = engine.phase(run_id, "kubeconfig/admin")
        assert (record.status, record.attempts, record.last_error) == ("failed", 12, message)
        run = engine.store.get_run(run_id)
        assert run.error == f"node cp1 phase kubeconfig/admin: {message}"
        plan = [p for _, p in run.plan]
        after = plan[plan.index("kubeconfig/admin") + 1:]
        assert after and all(engine.phase(run_id, p).status in ("pending", "skipped") for p in after)
        assert (tmp_path / "calls").read_text() == "12"  # the 13th start ran no action
        assert engine.client().get("kubeboot:cluster:kubernetes:lock:init") is None

        assert engine.client().hget(f"kubeboot:run:{run_id}:phases", "cp1|kubeconfig/admin|owner") is None
        engine.wait_for("Flower's view of the phase to be FAILURE",
                        lambda: _task_name("kubeconfig/admin") in events.names_with("task-failed"))
        failed = [t for t in events.state.tasks.values() if t.name == _task_name("kubeconfig/admin")]
        assert [t.state for t in failed] == ["FAILURE"]
        assert not {_task_name(p) for p in after} & set(events.types)  # the chain stopped there
    finally:
        events.close()
