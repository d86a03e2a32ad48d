"""Parent-run state against a real redis-server: step writes refused once the parent ended, a batch's
concurrency slots never exceeded by advances racing in threads and each cluster started exactly once,
the sweep's due set claimed by exactly one sweeper, run-end hooks called by whatever ends a run."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
import redis

from kubeboot.tasks.state import parents as parents_module
from kubeboot.tasks.state.parents import Parents
from kubeboot.tasks.state.secrets import SecretBox
from kubeboot.tasks.state.store import RunStore

NOW = "2026-01-01T00:00:00.000Z"


@pytest.fixture
def client(redis_server: str) -> Any:
    c = redis.Redis.from_url(redis_server)
    yield c
    c.close()


@pytest.fixture
def store(client: redis.Redis) -> RunStore:
    return RunStore(client, SecretBox(bytes(32)))


def cluster_run(store: RunStore) -> str:
    return store.create_run(kind="cluster", cluster="demo", config={}, plan=[("cp1", "init"), ("w1", "join")]).id


def test_a_step_moves_the_parent_to_running_and_is_recorded_once(store: RunStore) -> None:
    run_id = cluster_run(store)
    p = Parents(store.client)
    assert p.set_step(run_id, "cp1", "init", "running", now=NOW, child=f"{run_id}.cp1")
    assert not p.set_step(run_id, "cp1", "init", "running", now=NOW, child=f"{run_id}.cp1")  # the same write
    rec = next(r for r in store.phase_records(run_id) if r.node == "cp1")
    assert (rec.status, rec.attempts) == ("running", 1)
    assert store.run_status(run_id) == "running"
    assert [e.event for e in store.events(run_id) if e.node == "cp1"] == ["started"]


def test_no_step_is_written_once_the_parent_ended(store: RunStore) -> None:
    run_id = cluster_run(store)
    store.finish_run(run_id, status="failed", error="stopped")
    assert not Parents(store.client).set_step(run_id, "w1", "join", "running", now=NOW, child="x")
    assert next(r for r in store.phase_records(run_id) if r.node == "w1").status == "pending"


def test_racing_advances_never_exceed_the_concurrency_and_start_each_cluster_once(client: redis.Redis) -> None:
    names = [f"c{i}" for i in range(40)]
    started: list[str] = []
    running: set[str] = set()
    peak = [0]
    guard = threading.Lock()

    def advance(seed: int) -> None:
        p, rng = Parents(client), random.Random(seed)
        for _ in range(200):
            for name in p.take_slots("b-race", 3, names):
                with guard:
                    started.append(name)
                    running.add(name)
                    peak[0] = max(peak[0], len(p.slots("b-race").running))
            with guard:
                done = rng.choice(sorted(running)) if running else None
                if done:
                    running.discard(done)
            if done:
                p.release_slot("b-race", done)
            if len(started) == len(names) and not running:
                return

    threads = [threading.Thread(target=advance, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(started) == sorted(names)  # every cluster started, none twice
    assert peak[0] <= 3


def test_a_slot_is_given_back_once_and_a_requeued_cluster_goes_first(client: redis.Redis) -> None:
    p = Parents(client)
    assert p.take_slots("b-1", 1, ["a", "b", "c"]) == ["a"]
    assert p.release_slot("b-1", "a") and not p.release_slot("b-1", "a")
    p.requeue("b-1", ["a", "a"])
    assert p.slots("b-1").again == ("a",)
    assert p.take_slots("b-1", 2, ["a", "b", "c"]) == ["a", "b"]
    assert p.slots("b-1").started == 2


def test_of_two_sweepers_exactly_one_claims_a_due_parent(client: redis.Redis) -> None:
    p = Parents(client)
    p.schedule("c-due", 0)
    client.zadd("kubeboot:parents:due", {"c-later": 10**15})
    claims = [Parents(client).claim_due(30.0), Parents(client).claim_due(30.0)]
    assert sorted(map(tuple, claims)) == [(), ("c-due",)]


def test_whatever_ends_a_run_calls_the_end_hooks(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ended: list[str] = []
    monkeypatch.setattr(parents_module, "_END_HOOKS", [])
    parents_module.on_run_end(lambda _store, run_id: ended.append(run_id))
    first, second = cluster_run(store), cluster_run(store)
    store.finish_run(first, status="succeeded")
    store.finish_run(first, status="failed")  # already ended: no second call
    store.fail_phase(second, "cp1", "init", owner="", error="boom")
    assert ended == [first, second]
