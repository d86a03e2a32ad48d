"""The recovery sweep against a real redis-server that is both run state and broker: what a worker
re-sends when a phase's deadline passed, and what it leaves alone (``workflows.liveness``).

A run is submitted for real, then its queued message is dropped: each test puts the run in the state a
dead (or live) worker would leave, sweeps, and reads the broker's queues.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from kubeboot.config.loader import load_init_config
from kubeboot.config.settings import Settings
from kubeboot.tasks.state import RunStore
from kubeboot.tasks.state.keys import worker_alive_key
from kubeboot.tasks.state.presence import beat, now_ms
from kubeboot.tasks.trust.keyring import keyring_for, provision_node
from kubeboot.workers.celery_app import make_app
from kubeboot.workflows import liveness
from kubeboot.workflows.init_tree import AFTER_LOCAL
from kubeboot.workflows.runs import submit_init

QUEUE = "node.cp1"
SHORT = 0.05  # a lease or grace that lapses at once
WORKER = "node-cp1@old"


class World:
    def __init__(self, redis_url: str, config: Path, state_dir: Path) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.settings = Settings(redis_url=redis_url, state_dir=state_dir)
        provision_node(self.settings, "cp1")  # the node worker's key, pinned on the control side
        self.store = RunStore(self.client, keyring_for(self.settings, "client"))
        self.app = make_app(redis_url, self.settings)
        self.config = config

    def run(self) -> str:
        run_id = submit_init(self.app, self.client, self.store, self.settings, load_init_config(str(self.config)),
                             skip=list(AFTER_LOCAL)).run.id
        self.client.delete(QUEUE)  # the sent chain is gone: only what the sweep sends is in the queue
        return run_id

    def claim(self, run_id: str, path: str, owner: str, lease: float) -> None:
        verdict = self.store.claim_phase(run_id, "cp1", path, owner=owner, worker=WORKER, max_attempts=12,
                                         lease=lease)
        assert verdict.action == "run"

    def worker_started(self, hostname: str, at_ms: int) -> None:
        self.client.set(worker_alive_key(hostname), at_ms, px=60_000)

    def queued(self) -> list[str]:
        """Task names of the messages waiting in the node's queue, oldest first."""
        return [json.loads(m)["headers"]["task"] for m in reversed(self.client.lrange(QUEUE, 0, -1))]

    def sweep(self) -> list[str]:
        time.sleep(SHORT * 3)  # lets a SHORT deadline pass on Redis's clock: a precondition, not an assertion
        return liveness.sweep(self.app, self.client, self.store)


@pytest.fixture
def world(redis_server: str, node_config: Path, tmp_path: Path) -> World:
    w = World(redis_server, node_config, tmp_path)
    beat(w.client, [QUEUE, "control"], "node-cp1@new")  # a live worker consumes the queues
    return w


def test_a_running_phase_whose_copy_died_is_sent_again_with_the_rest_of_the_run(world: World) -> None:
    run_id = world.run()
    world.claim(run_id, "preflight", "dead", lease=SHORT)
    assert world.sweep() == [f"{run_id} cp1 preflight"]
    assert world.queued() == ["kubeboot.init.preflight"]
    chain = json.loads(world.client.lindex(QUEUE, 0))
    assert chain["headers"]["argsrepr"] == repr((run_id, "cp1"))
    assert world.sweep() == []  # postponed: one re-send, not one per sweep
    assert world.queued() == ["kubeboot.init.preflight"]


def test_nothing_is_sent_to_a_queue_no_worker_consumes(world: World) -> None:
    run_id = world.run()
    world.client.delete(f"kubeboot:queue:{QUEUE}:consumer")
    world.claim(run_id, "preflight", "dead", lease=SHORT)
    assert world.sweep() == []
    assert world.queued() == []
    run = world.store.get_run(run_id)
    assert run is not None
    assert liveness.waiting_on(world.client, run, world.store.phase_records(run_id)) == f"no worker consumes {QUEUE}"


@pytest.mark.parametrize(
    ("worker", "resent"),
    [
        pytest.param("alive since before", False, id="its worker lives: the successor waits in a backlog"),
        pytest.param("gone", True, id="its worker is gone: it may have died before sending it"),
        pytest.param("restarted since", True, id="its worker was restarted since: the earlier process died"),
    ],
)
def test_a_success_whose_successor_never_started_is_sent_again_only_if_its_worker_died(
    world: World, worker: str, resent: bool
) -> None:
    run_id = world.run()
    before = now_ms(world.client) - 60_000
    world.claim(run_id, "preflight", "a", lease=30)
    world.store.complete_phase(run_id, "cp1", "preflight", owner="a", grace=SHORT, successor=("cp1", "certs"))
    if worker == "alive since before":
        world.worker_started(WORKER, before)
    elif worker == "restarted since":
        world.worker_started(WORKER, now_ms(world.client) + 1)
    sent = world.sweep()
    assert (sent == [f"{run_id} cp1 certs"]) is resent
    assert world.queued() == (["kubeboot.init.certs"] if resent else [])


def test_a_retry_of_a_live_worker_is_sent_again_once_it_is_stale(world: World, monkeypatch: Any) -> None:
    run_id = world.run()
    world.worker_started(WORKER, now_ms(world.client) - 60_000)
    world.claim(run_id, "preflight", "a", lease=30)
    world.store.retry_phase(run_id, "cp1", "preflight", owner="a", error="busy", delay=0, lease=SHORT)
    assert world.sweep() == []  # its worker holds the retry: it is late, not lost
    monkeypatch.setattr(liveness, "STALE_AFTER", 0.0)
    world.client.zadd("kubeboot:leases", {f"{run_id}|cp1|preflight|": 0})  # due for a look again now
    assert world.sweep() == [f"{run_id} cp1 preflight"]


def test_the_entries_of_an_ended_run_are_dropped(world: World) -> None:
    run_id = world.run()
    world.claim(run_id, "preflight", "a", lease=SHORT)
    world.client.srem("kubeboot:runs:active", run_id)
    world.client.hset(f"kubeboot:run:{run_id}", "status", "failed")  # ended by a path that left its entry
    assert world.sweep() == []
    assert world.client.zcard("kubeboot:leases") == 0
    assert world.queued() == []
