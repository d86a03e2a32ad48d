"""Exactly-once phases in the run store, against a real redis-server: leases between copies of a phase,
the successor sent once, the attempt ceiling, the cluster lock's fencing token checked on every write,
the run finished once and resumed once."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from kubeboot.tasks.state.lock import InitLock
from kubeboot.tasks.state.secrets import SecretBox
from kubeboot.tasks.state.store import RunStore
from kubeboot.tasks.state.transitions import Verdict

PLAN = [("cp1", "preflight"), ("cp1", "certs/ca"), ("cp1", "certs/apiserver")]
LOCK = "kubeboot:cluster:demo:lock:init"
LONG = 30.0  # a lease nobody outlives in a test
SHORT = 0.05  # a lease that lapses at once


@pytest.fixture
def client(redis_server: str) -> redis.Redis:
    return redis.Redis.from_url(redis_server)


@pytest.fixture
def store(client: redis.Redis) -> RunStore:
    return RunStore(client, SecretBox(bytes(32)), lock_ttl=60)


def locked_run(store: RunStore, client: redis.Redis, run_id: str = "r-1") -> InitLock:
    lock = InitLock(client, "demo", 60)
    store.create_run(kind="init", cluster="demo", config=[], plan=PLAN, run_id=run_id,
                     lock=(lock.key, lock.acquire(run_id)))
    return lock


def claim(store: RunStore, path: str, owner: str, *, lease: float = LONG, successor: str | None = None,
          max_attempts: int = 12, run_id: str = "r-1") -> Verdict:
    return store.claim_phase(run_id, "cp1", path, owner=owner, worker="node-cp1@h", max_attempts=max_attempts,
                             lease=lease, successor=("cp1", successor) if successor else None)


def status(store: RunStore, path: str) -> tuple[str, int]:
    rec = next(r for r in store.phase_records("r-1") if r.path == path)
    return rec.status, rec.attempts


def after_lapse() -> None:
    time.sleep(SHORT * 3)  # lets a SHORT lease lapse on Redis's clock: a precondition, not an assertion


# --- leases between copies of one phase ------------------------------------------------------------
def test_a_second_copy_waits_while_the_first_holds_the_phase(store: RunStore, client: redis.Redis) -> None:
    locked_run(store, client)
    assert claim(store, "preflight", "a") == Verdict("run", "1")
    waiting = claim(store, "preflight", "b")
    assert waiting.action == "defer"
    assert 0 < waiting.wait <= LONG
    assert status(store, "preflight") == ("running", 1)


def test_a_copy_whose_holder_died_takes_the_phase_over_and_the_dead_copy_can_write_nothing(
    store: RunStore, client: redis.Redis
) -> None:
    locked_run(store, client)
    claim(store, "preflight", "dead", lease=SHORT)
    after_lapse()
    assert claim(store, "preflight", "alive") == Verdict("run", "2")
    assert store.complete_phase("r-1", "cp1", "preflight", owner="dead", grace=LONG) == Verdict("ignore", "lease lost")
    assert store.fail_phase("r-1", "cp1", "preflight", owner="dead", error="late") == Verdict("ignore", "lease lost")
    assert not store.renew_lease("r-1", "cp1", "preflight", owner="dead", lease=LONG)
    assert store.renew_lease("r-1", "cp1", "preflight", owner="alive", lease=LONG)
    assert store.complete_phase("r-1", "cp1", "preflight", owner="alive", grace=LONG) == Verdict("ok", "2")
    assert status(store, "preflight") == ("succeeded", 2)


# --- the successor of a succeeded phase is sent once -----------------------------------------------
def test_a_duplicate_of_a_succeeded_phase_waits_for_the_completer_then_sends_the_successor_only_if_undelivered(
    store: RunStore, client: redis.Redis
) -> None:
    locked_run(store, client)
    claim(store, "preflight", "a")
    store.complete_phase("r-1", "cp1", "preflight", owner="a", grace=SHORT * 20)
    # The completer may still be sending the successor: wait.
    assert claim(store, "preflight", "b", successor="certs/ca").action == "defer"
    time.sleep(SHORT * 22)
    # The completer's grace lapsed and the successor never started: it died before sending it.
    assert claim(store, "preflight", "b", successor="certs/ca") == Verdict("send", "1")
    assert claim(store, "certs/ca", "c") == Verdict("run", "1")
    # Once the successor started, every later copy has nothing left to do.
    assert claim(store, "preflight", "d", successor="certs/ca") == Verdict("ignore", "phase succeeded")
    assert status(store, "preflight") == ("succeeded", 1)


def test_a_copy_of_a_phase_of_an_ended_run_is_ignored(store: RunStore, client: redis.Redis) -> None:
    locked_run(store, client)
    for path in ("preflight", "certs/ca", "certs/apiserver"):
        claim(store, path, f"copy-{path}")
        store.complete_phase("r-1", "cp1", path, owner=f"copy-{path}", grace=LONG)
    assert store.complete_run("r-1") == Verdict("ok", "0")
    assert claim(store, "certs/apiserver", "late") == Verdict("ignore", "run succeeded")
    assert store.complete_run("r-1") == Verdict("ignore", "run succeeded")  # the finish runs once
    run_events = [e.event for e in store.events("r-1") if e.is_run_event]
    assert run_events == ["submitted", "succeeded"]
    assert client.get(LOCK) is None  # released by the run's end
    assert store.active_runs() == []


def test_a_finish_with_phases_not_done_fails_the_run_naming_them(store: RunStore, client: redis.Redis) -> None:
    locked_run(store, client)
    claim(store, "preflight", "a")
    store.complete_phase("r-1", "cp1", "preflight", owner="a", grace=LONG)
    verdict = store.complete_run("r-1")
    message = "the run reached its end with phases not done: cp1 certs/ca, cp1 certs/apiserver"
    assert verdict == Verdict("failed", message)
    run = store.get_run("r-1")
    assert run is not None
    assert (run.status, run.error) == ("failed", message)


# --- the attempt ceiling ------------------------------------------------------------------------------
def test_the_attempt_ceiling_fails_the_phase_and_the_run_and_frees_the_cluster(
    store: RunStore, client: redis.Redis
) -> None:
    locked_run(store, client)
    for n in (1, 2):
        assert claim(store, "preflight", f"copy-{n}", max_attempts=2) == Verdict("run", str(n))
        store.retry_phase("r-1", "cp1", "preflight", owner=f"copy-{n}", error=f"port busy ({n})", delay=1)
    verdict = claim(store, "preflight", "copy-3", max_attempts=2)
    assert verdict == Verdict("failed", "giving up after 2 attempts: port busy (2)")
    assert status(store, "preflight") == ("failed", 2)
    run = store.get_run("r-1")
    assert run is not None
    assert (run.status, run.error) == ("failed", "node cp1 phase preflight: giving up after 2 attempts: port busy (2)")
    assert client.get(LOCK) is None


def test_a_resumed_run_gives_its_failed_phase_a_new_budget(store: RunStore, client: redis.Redis) -> None:
    locked_run(store, client)
    claim(store, "preflight", "a", max_attempts=1)
    store.retry_phase("r-1", "cp1", "preflight", owner="a", error="busy", delay=1)
    assert claim(store, "preflight", "b", max_attempts=1).action == "failed"
    assert store.reopen_run("r-1") == Verdict("ok", "0")
    assert claim(store, "preflight", "c", max_attempts=1) == Verdict("run", "2")


# --- fencing: the cluster lock's token on every write ------------------------------------------------
def test_a_run_whose_lock_another_run_took_over_writes_nothing_more_and_ends_failed(
    store: RunStore, client: redis.Redis
) -> None:
    lock = locked_run(store, client)
    claim(store, "preflight", "a")
    client.delete(LOCK)  # the lease lapsed (all its workers were down for longer than the lock TTL) ...
    token = lock.acquire("r-2")  # ... and another submit took the cluster
    verdict = store.complete_phase("r-1", "cp1", "preflight", owner="a", grace=LONG)
    message = f"superseded: run r-2 holds the cluster lock now (lock token {token})"
    assert verdict == Verdict("failed", message)
    assert status(store, "preflight") == ("failed", 1)
    run = store.get_run("r-1")
    assert run is not None
    assert (run.status, run.error) == ("failed", f"node cp1 phase preflight: {message}")
    holder = lock.holder()
    assert holder is not None and (holder.owner, holder.token) == ("r-2", token)  # left alone
    assert claim(store, "certs/ca", "b") == Verdict("ignore", "run failed")


def test_a_run_whose_lock_lapsed_with_nobody_taking_it_takes_it_again_with_a_new_token(
    store: RunStore, client: redis.Redis
) -> None:
    lock = locked_run(store, client)
    client.delete(LOCK)
    assert claim(store, "preflight", "a") == Verdict("run", "1")
    holder = lock.holder()
    assert holder is not None and (holder.owner, holder.token) == ("r-1", 2)
    assert client.hget("kubeboot:run:r-1", "fence") == b"2"
    with pytest.raises(Exception, match="initialised by run r-1"):
        lock.acquire("r-2")


def test_the_hard_time_limit_fails_whoever_holds_the_phase(store: RunStore, client: redis.Redis) -> None:
    locked_run(store, client)
    claim(store, "preflight", "killed")
    verdict = store.fail_phase("r-1", "cp1", "preflight", owner="", error="killed by the hard time limit")
    assert verdict.action == "failed"
    assert store.get_run("r-1").status == "failed"  # type: ignore[union-attr]
    assert client.get(LOCK) is None


# --- resume ------------------------------------------------------------------------------------------
def test_of_concurrent_resumes_of_a_failed_run_exactly_one_reopens_it(store: RunStore, client: redis.Redis) -> None:
    lock = locked_run(store, client)
    store.finish_run("r-1", status="failed", error="boom")
    barrier = threading.Barrier(8)
    verdicts: list[Verdict] = []

    def resume() -> None:
        barrier.wait()
        verdicts.append(store.reopen_run("r-1"))

    threads = [threading.Thread(target=resume) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(verdicts, key=lambda v: v.action) == [Verdict("ok", "0")] + [Verdict("refused", "running")] * 7
    assert [e.event for e in store.events("r-1") if e.is_run_event] == ["submitted", "failed", "resumed"]
    holder = lock.holder()
    assert holder is not None and (holder.owner, holder.token) == ("r-1", 2)
    assert store.active_runs() == ["r-1"]


def test_a_run_cannot_resume_while_another_run_holds_its_cluster(store: RunStore, client: redis.Redis) -> None:
    lock = locked_run(store, client)
    store.finish_run("r-1", status="failed", error="boom")
    lock.acquire("r-2")
    verdict = store.reopen_run("r-1")
    assert verdict.action == "held"
    assert '"owner":"r-2"' in verdict.detail.replace(" ", "")
    assert store.run_status("r-1") == "failed"


# --- the lease index a worker's sweep reads ----------------------------------------------------------
def test_a_dead_copys_phase_shows_as_overdue_once_its_lease_lapses(store: RunStore, client: redis.Redis) -> None:
    locked_run(store, client)
    claim(store, "preflight", "alive")
    claim(store, "certs/ca", "dead", lease=SHORT)
    after_lapse()
    assert [(r, n, p) for r, n, p, _ in store.overdue_leases()] == [("r-1", "cp1", "certs/ca")]


def test_of_two_sweepers_exactly_one_takes_an_overdue_phase(store: RunStore, client: redis.Redis) -> None:
    locked_run(store, client)
    claim(store, "preflight", "dead", lease=SHORT)
    after_lapse()
    ((run_id, node, path, seen),) = store.overdue_leases()
    assert store.postpone_lease(run_id, node, path, seen=seen, delay=LONG)
    assert not store.postpone_lease(run_id, node, path, seen=seen, delay=LONG)
    assert store.overdue_leases() == []


def test_a_phase_starting_clears_its_predecessors_entry_and_the_runs_end_clears_all(
    store: RunStore, client: redis.Redis
) -> None:
    locked_run(store, client)
    claim(store, "preflight", "a")
    store.complete_phase("r-1", "cp1", "preflight", owner="a", grace=LONG, successor=("cp1", "certs/ca"))
    indexed = {m.decode() for m in client.zrange("kubeboot:leases", 0, -1)}
    assert indexed == {"r-1|cp1|preflight|"}  # the successor must start within the grace
    claim(store, "certs/ca", "b")
    indexed = {m.decode() for m in client.zrange("kubeboot:leases", 0, -1)}
    assert indexed == {"r-1|cp1|certs/ca|"}
    store.fail_phase("r-1", "cp1", "certs/ca", owner="b", error="boom")
    assert client.zcard("kubeboot:leases") == 0
