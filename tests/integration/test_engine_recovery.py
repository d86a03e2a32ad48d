"""No hung run, end to end: every way a run can stop ends it ``failed`` with a message and frees its
cluster, a run that waits says what for, and the CLI never follows a run forever.

Worker kills and restarts are in test_engine_faults.py and test_engine_exactly_once.py; the engine runs
with the production timing settings (visibility timeout 600 s), so nothing here is saved by the broker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

LOCK = "kubeboot:cluster:kubernetes:lock:init"


def _barrier(tmp_path: Path, phase: str) -> tuple[dict[str, str], Path]:
    directory = tmp_path / f"barrier-{phase.replace('/', '_')}"
    return {"kind": "barrier", "phase": phase, "dir": str(directory)}, directory


def _status(engine: Any, run_id: str) -> dict[str, Any]:
    result = engine.cli("status", run_id, "-o", "json")
    return dict(json.loads(result.stdout))


def test_a_phase_killed_by_the_hard_time_limit_fails_the_run_with_a_message_and_frees_the_cluster(
    engine: Any,
) -> None:
    engine.env["KUBEBOOT_PHASE_TIME_LIMIT"] = "8"  # the soft limit (6.4 s) is swallowed by the stuck phase
    engine.faults = [{"kind": "hang", "phase": "kubeconfig/admin"}]
    engine.start_workers()
    run_id = engine.submit(engine.config())

    assert engine.wait_run(run_id) == "failed", engine.logs()
    message = "killed by the hard time limit after 8s (KUBEBOOT_PHASE_TIME_LIMIT)"
    record = engine.phase(run_id, "kubeconfig/admin")
    assert (record.status, record.last_error) == ("failed", message)
    assert engine.store.get_run(run_id).error == f"node cp1 phase kubeconfig/admin: {message}"
    assert engine.client().get(LOCK) is None
    status = engine.cli("status", run_id)
    assert status.returncode == 1
    assert f"error: node cp1 phase kubeconfig/admin: {message}" in status.stdout


def test_a_run_whose_cluster_another_run_took_over_ends_failed_naming_it_and_the_other_run_completes(
    engine: Any, tmp_path: Path
) -> None:
    fault, barrier = _barrier(tmp_path, "kubeconfig/admin")
    engine.faults = [fault]
    engine.start_workers()
    first = engine.submit(engine.config())
    engine.wait_for("the first run to reach the barrier", (barrier / "reached").exists)
    engine.client().delete(LOCK)  # its lease lapsed (say, every worker was down longer than the lock TTL)
    second = engine.submit(engine.config())  # ... and another init of the cluster was accepted
    (barrier / "release").touch()

    assert engine.wait_run(first) == "failed", engine.logs()
    message = f"superseded: run {second} holds the cluster lock now (lock token 2)"
    assert engine.store.get_run(first).error == f"node cp1 phase kubeconfig/admin: {message}"
    plan = [p for _, p in engine.store.get_run(first).plan]
    later = plan[plan.index("kubeconfig/admin") + 1:]
    assert all(engine.phase(first, p).status in ("pending", "skipped") for p in later)  # nothing more written
    assert engine.wait_run(second) == "succeeded", engine.logs()
    assert engine.client().get(LOCK) is None


def test_a_submit_that_cannot_send_its_run_ends_it_failed_and_frees_the_cluster(
    redis_server: str, node_config: Path, tmp_path: Path
) -> None:
    from kubeboot.config.loader import load_init_config
    from kubeboot.config.settings import Settings
    from kubeboot.tasks.state import RunStore
    from kubeboot.tasks.trust.keyring import keyring_for, provision_node
    from kubeboot.workers.celery_app import make_app
    from kubeboot.workflows.runs import RunRefusedError, submit_init

    settings = Settings(redis_url=redis_server, state_dir=tmp_path)
    client = redis.Redis.from_url(redis_server)
    provision_node(settings, "cp1")  # the node worker's key, pinned on the control side
    store = RunStore(client, keyring_for(settings, "client"))
    app = make_app("redis://127.0.0.1:1/0", settings)  # the run state is up, the broker is not
    app.conf.task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1}

    with pytest.raises(RunRefusedError, match="submit failed before the run was sent to the workers"):
        submit_init(app, client, store, settings, load_init_config(str(node_config)))
    (run,) = store.list_runs()
    assert run.status == "failed"
    assert run.error is not None
    assert run.error.startswith("submit failed before the run was sent to the workers: OperationalError: ")
    assert client.get(LOCK) is None
    assert store.active_runs() == []


def test_status_says_which_queue_no_worker_consumes_while_a_run_waits_for_it(engine: Any) -> None:
    engine.start_redis()
    run_id = engine.submit(engine.config())
    assert _status(engine, run_id)["waiting"] == "no worker consumes node.cp1"
    assert "  waiting: no worker consumes node.cp1" in engine.cli("status", run_id).stdout.splitlines()

    engine.start_node()  # the node's phases run; the run's finish needs the control queue
    engine.wait_for("status to name the control queue",
                    lambda: _status(engine, run_id)["waiting"] == "no worker consumes control")
    assert engine.store.run_status(run_id) == "running"
    engine.start_control()
    assert engine.wait_run(run_id) == "succeeded", engine.logs()
    view = _status(engine, run_id)
    assert view["waiting"] is None
    assert "waiting" not in engine.cli("status", run_id).stdout


def test_of_two_concurrent_resumes_of_a_failed_run_exactly_one_sends_it(engine: Any, tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    hold, barrier = _barrier(tmp_path, "kubelet-start")  # keeps the resumed run going while both resume
    engine.faults = [{"kind": "permanent", "phase": "kubeconfig/admin", "flag": str(flag)}, hold]
    engine.start_workers()
    run_id = engine.submit(engine.config())
    assert engine.wait_run(run_id) == "failed", engine.logs()
    flag.unlink()

    first = engine.spawn("resume-1", "resume", run_id)
    second = engine.spawn("resume-2", "resume", run_id)
    assert sorted([first.wait(timeout=120), second.wait(timeout=120)]) == [0, 1], engine.logs()
    refused = next(n for n in ("resume-1", "resume-2") if engine.procs[n].returncode == 1)
    assert (f"error: run {run_id} is running; follow it with `kubeboot status {run_id} --watch`"
            in (engine.dir / f"{refused}.log").read_text())
    (barrier / "release").touch()

    assert engine.wait_run(run_id) == "succeeded", engine.logs()
    assert engine.phase(run_id, "kubeconfig/admin").attempts == 2  # once before, once after: one chain
    assert [e.event for e in engine.store.events(run_id) if e.is_run_event] == [
        "submitted", "failed", "resumed", "succeeded"]


def test_following_a_run_stops_at_the_timeout_saying_it_goes_on_and_how_to_follow_it(
    engine: Any, tmp_path: Path
) -> None:
    fault, barrier = _barrier(tmp_path, "kubeconfig/admin")
    engine.faults = [fault]
    engine.start_workers()
    run_id = engine.submit(engine.config())
    engine.wait_for("the run to reach the barrier", (barrier / "reached").exists)

    watched = engine.cli("status", run_id, "--watch", "--timeout", "2s")
    assert watched.returncode == 1
    assert watched.stderr.strip() == (f"error: run {run_id} is still running after 2s: it goes on without this "
                                      f"command; follow it with `kubeboot status {run_id} --watch`")
    assert "kubeconfig/admin" in watched.stdout  # the view of where it is
    other = engine.cli("submit", "init", "--config", str(engine.config("other.yaml", cluster="other")), "--wait",
                       "--timeout", "1", *engine.skip)
    assert other.returncode == 1
    assert "is still pending after 1s" in other.stderr or "is still running after 1s" in other.stderr
    bad = engine.cli("status", run_id, "--watch", "--timeout", "ten")
    assert bad.returncode == 2
    assert "'ten' is not a positive duration" in bad.stderr

    (barrier / "release").touch()
    assert engine.wait_run(run_id) == "succeeded", engine.logs()
    assert engine.cli("status", run_id, "--watch", "--timeout", "10m").returncode == 0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        pytest.param({"KUBEBOOT_VISIBILITY_TIMEOUT": "60"}, "KUBEBOOT_VISIBILITY_TIMEOUT=60 must be above "
                     "KUBEBOOT_PHASE_TIME_LIMIT=150 plus KUBEBOOT_RETRY_MAX_DELAY=30", id="visibility timeout"),
        pytest.param({"KUBEBOOT_LOCK_TTL": "300"},
                     "KUBEBOOT_LOCK_TTL=300 must be above KUBEBOOT_VISIBILITY_TIMEOUT=600", id="lock ttl"),
    ],
)
def test_a_worker_with_inconsistent_timing_settings_exits_2_naming_them(
    engine: Any, env: dict[str, str], named: str
) -> None:
    engine.env.update(env)
    result = engine.cli("worker", "node", "--id", "cp1", "--root", str(engine.root))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {named}")
    assert len(result.stderr.strip().splitlines()) == 1
