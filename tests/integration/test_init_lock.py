"""The per-cluster init lock on a real redis-server: first wins, re-entrant, fenced, recoverable."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import redis

from kubeboot.tasks.state.lock import InitLock, LockHeldError, SerialLock, control_plane_join_lock
from kubeboot.tasks.state.secrets import SecretBox
from kubeboot.tasks.state.store import RunStore

FROZEN = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
KEY = "kubeboot:cluster:demo:lock:init"


@pytest.fixture
def client(redis_server: str) -> redis.Redis:
    return redis.Redis.from_url(redis_server)


def init_lock(client: redis.Redis, ttl: float = 60.0) -> InitLock:
    return InitLock(client, "demo", ttl, clock=lambda: FROZEN)


def wait_until_expired(lock: SerialLock) -> None:
    """Bounded wait for Redis to expire a short lease (a precondition, not an assertion on timing)."""
    for _ in range(1000):
        if lock.holder() is None:
            return
        time.sleep(0.005)
    raise AssertionError("the lease never expired")


def test_the_first_run_gets_the_lock_and_token_one(client: redis.Redis) -> None:
    lock = init_lock(client)
    assert lock.acquire("r-1") == 1
    holder = lock.holder()
    assert holder is not None
    assert (holder.owner, holder.token, holder.acquired_at) == ("r-1", 1, "2025-03-01T12:00:00.000Z")
    assert 0 < client.pttl(KEY) <= 60_000


def test_the_holder_acquiring_again_keeps_its_token_and_renews_the_lease(client: redis.Redis) -> None:
    lock = init_lock(client)
    token = lock.acquire("r-1")
    client.pexpire(KEY, 500)  # most of the lease used up
    assert lock.acquire("r-1") == token
    assert client.pttl(KEY) > 500


def test_another_run_is_refused_with_the_holder_named(client: redis.Redis) -> None:
    lock = init_lock(client)
    lock.acquire("r-1")
    with pytest.raises(LockHeldError) as err:
        init_lock(client).acquire("r-2")
    assert str(err.value) == (
        "cluster demo is being initialised by run r-1 since 2025-03-01T12:00:00.000Z (lock token 1)"
    )
    assert err.value.holder.owner == "r-1"
    assert lock.holder() == err.value.holder


def test_every_change_of_holder_gets_a_larger_fencing_token(client: redis.Redis) -> None:
    lock = init_lock(client)
    tokens = []
    for run_id in ("r-1", "r-2", "r-1"):
        tokens.append(lock.acquire(run_id))
        assert lock.release(run_id)
    assert tokens == [1, 2, 3]


def test_a_lapsed_lease_frees_the_lock_for_the_next_run(client: redis.Redis) -> None:
    lock = init_lock(client, ttl=0.05)
    lock.acquire("r-1")
    wait_until_expired(lock)
    assert lock.acquire("r-2") == 2
    assert not lock.release("r-1")  # the lapsed holder cannot free its successor's lock
    holder = lock.holder()
    assert holder is not None
    assert holder.owner == "r-2"


def test_only_the_owner_releases(client: redis.Redis) -> None:
    lock = init_lock(client)
    lock.acquire("r-1")
    assert not lock.release("r-2")
    assert lock.holder() is not None
    assert lock.release("r-1")
    assert lock.holder() is None
    assert not lock.release("r-1")  # releasing twice is harmless


def test_a_release_with_a_stale_token_leaves_the_lock_alone(client: redis.Redis) -> None:
    lock = init_lock(client)
    token = lock.acquire("r-1")
    assert not lock.release("r-1", token=token + 1)
    assert lock.release("r-1", token=token)


@pytest.mark.parametrize(
    ("owner_status", "freed"),
    [
        pytest.param("running", False, id="a running owner keeps the lock"),
        pytest.param("failed", True, id="a failed owner loses it"),
        pytest.param("succeeded", True, id="a finished owner loses it"),
        pytest.param(None, False, id="an owner not yet recorded in the store keeps it until its lease lapses"),
    ],
)
def test_a_lock_whose_owner_run_ended_can_be_recovered(
    client: redis.Redis, owner_status: str | None, freed: bool
) -> None:
    store = RunStore(client, SecretBox(bytes(32)))
    lock = init_lock(client)
    token = lock.acquire("r-1")
    if owner_status is not None:
        store.create_run(kind="init", cluster="demo", config=[], plan=[("cp1", "preflight")], run_id="r-1",
                         lock=(lock.key, token))
        if owner_status == "running":
            store.claim_phase("r-1", "cp1", "preflight", owner="o", worker="w", max_attempts=3, lease=10)
        else:
            store.finish_run("r-1", status=owner_status)
            lock.acquire("r-1")  # taken again after the run ended (a worker that died holding it)
    recovered = lock.release_if_owner_finished(store)
    assert (recovered is not None) == freed
    assert (lock.holder() is None) == freed


def test_of_many_concurrent_runs_exactly_one_wins(client: redis.Redis) -> None:
    barrier = threading.Barrier(16)
    winners: list[tuple[str, int]] = []
    refused: list[str] = []

    def contend(run_id: str) -> None:
        lock = InitLock(redis.Redis(connection_pool=client.connection_pool), "demo", 60)
        barrier.wait()
        try:
            winners.append((run_id, lock.acquire(run_id)))
        except LockHeldError as err:
            refused.append(err.holder.owner)

    threads = [threading.Thread(target=contend, args=(f"r-{i}",)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert winners[0][1] == 1
    assert refused == [winners[0][0]] * 15


def test_init_and_control_plane_join_locks_are_independent(client: redis.Redis) -> None:
    init_lock(client).acquire("r-1")
    join = control_plane_join_lock(client, "demo", 60, clock=lambda: FROZEN)
    assert join.acquire("r-2") == 1
    with pytest.raises(LockHeldError, match="cluster demo is adding a control-plane node for run r-2 since"):
        join.acquire("r-3")
    assert client.exists("kubeboot:cluster:demo:lock:join-control-plane") == 1


def test_locks_of_different_clusters_do_not_interact(client: redis.Redis) -> None:
    assert init_lock(client).acquire("r-1") == 1
    assert InitLock(client, "other", 60).acquire("r-2") == 1
