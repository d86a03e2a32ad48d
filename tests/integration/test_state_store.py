"""The run store against a real redis-server: schema, atomic transitions, events, secrets never in clear."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from kubeboot.tasks.state.secrets import SecretBox, SecretError
from kubeboot.tasks.state.store import NoSuchRunError, RunExistsError, RunStore
from kubeboot.tasks.state.transitions import Verdict

KEY = bytes(range(32))
TOKEN = "abcdef.0123456789abcdef"
CERT_KEY = "f" * 64
PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----\n"
CONFIG: list[dict[str, Any]] = [
    {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration", "certificateKey": CERT_KEY,
     "bootstrapTokens": [{"token": TOKEN}], "nodeRegistration": {"name": "cp1"}},
    {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration", "clusterName": "demo"},
]
PLAN = [("cp1", "preflight"), ("cp1", "certs/ca"), ("cp1", "certs/apiserver"), ("w1", "preflight")]


class FrozenClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def client(redis_server: str) -> redis.Redis:
    return redis.Redis.from_url(redis_server)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def store(client: redis.Redis, clock: FrozenClock) -> RunStore:
    return RunStore(client, SecretBox(KEY), clock=clock)


def new_run(store: RunStore, run_id: str = "r-1", cluster: str = "demo") -> str:
    return store.create_run(kind="init", cluster=cluster, config=CONFIG, plan=PLAN, run_id=run_id).id


def start(store: RunStore, node: str, path: str, *, owner: str = "copy-1", worker: str = "node.cp1",
          run_id: str = "r-1", successor: tuple[str, str] | None = None) -> Verdict:
    return store.claim_phase(run_id, node, path, owner=owner, worker=worker, max_attempts=12, lease=30,
                             successor=successor)


def succeed(store: RunStore, node: str, path: str, *, owner: str = "copy-1") -> Verdict:
    return store.complete_phase("r-1", node, path, owner=owner, grace=30)


# --- runs -------------------------------------------------------------------------------------------
def test_a_created_run_reads_back_field_by_field(store: RunStore) -> None:
    run = store.create_run(kind="init", cluster="demo", config=CONFIG, plan=PLAN, run_id="r-1")
    canonical = json.dumps(CONFIG, sort_keys=True, separators=(",", ":"))
    assert run == store.get_run("r-1")
    assert (run.id, run.kind, run.cluster, run.status) == ("r-1", "init", "demo", "pending")
    assert run.spec_digest == hashlib.sha256(canonical.encode()).hexdigest()
    assert run.created == "2025-03-01T12:00:00.000Z"
    assert (run.started, run.finished, run.error) == (None, None, None)
    assert run.nodes == ("cp1", "w1")
    assert run.plan == tuple(PLAN)
    assert store.run_config("r-1") == CONFIG


def test_a_generated_run_id_is_short_and_prefixed(store: RunStore) -> None:
    run = store.create_run(kind="init", cluster="demo", config=CONFIG, plan=PLAN)
    assert re.fullmatch(r"r-[0-9a-f]{8}", run.id)


def test_creating_a_run_twice_with_one_id_is_refused(store: RunStore) -> None:
    new_run(store)
    with pytest.raises(RunExistsError, match="r-1 already exists"):
        new_run(store)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("run_id", "r-1:phases", id="a run id with a colon could forge another key"),
        pytest.param("cluster", "demo:lock", id="a cluster name with a colon"),
        pytest.param("kind", "upgrade", id="an unknown kind"),
    ],
)
def test_bad_names_are_refused_before_anything_is_written(
    store: RunStore, client: redis.Redis, field: str, value: str
) -> None:
    args: dict[str, Any] = {"kind": "init", "cluster": "demo", "config": CONFIG, "plan": PLAN, "run_id": "r-1"}
    with pytest.raises(ValueError, match="invalid"):
        store.create_run(**{**args, field: value})
    assert client.dbsize() == 0


def test_runs_are_listed_newest_first_and_by_cluster(store: RunStore, clock: FrozenClock) -> None:
    for run_id, cluster in [("r-1", "demo"), ("r-2", "other"), ("r-3", "demo")]:
        new_run(store, run_id, cluster)
        clock.advance(1)
    assert [r.id for r in store.list_runs()] == ["r-3", "r-2", "r-1"]
    assert [r.id for r in store.list_runs(cluster="demo")] == ["r-3", "r-1"]
    assert [r.id for r in store.list_runs(limit=1)] == ["r-3"]


def test_finishing_a_run_records_status_time_error_and_an_event(store: RunStore, clock: FrozenClock) -> None:
    new_run(store)
    clock.advance(90)
    store.finish_run("r-1", status="failed", error="certs/ca: disk full")
    run = store.get_run("r-1")
    assert run is not None
    assert (run.status, run.finished, run.error) == ("failed", "2025-03-01T12:01:30.000Z", "certs/ca: disk full")
    last = store.events("r-1")[-1]
    assert (last.is_run_event, last.event, last.message) == (True, "failed", "certs/ca: disk full")


def test_reopening_a_failed_run_clears_its_end_and_keeps_phase_history(store: RunStore) -> None:
    new_run(store)
    start(store, "cp1", "preflight")
    assert store.fail_phase("r-1", "cp1", "preflight", owner="copy-1", error="port 6443 in use").action == "failed"
    assert store.reopen_run("r-1").action == "ok"
    run = store.get_run("r-1")
    assert run is not None
    assert (run.status, run.finished, run.error) == ("running", None, None)
    assert store.phase_records("r-1")[0].last_error == "port 6443 in use"
    assert store.events("r-1")[-1].event == "resumed"


def test_an_unknown_run_reads_as_none(store: RunStore) -> None:
    assert store.get_run("r-404") is None
    assert store.run_status("r-404") is None


# --- phases -----------------------------------------------------------------------------------------
def test_planned_phases_start_pending_in_plan_order(store: RunStore) -> None:
    new_run(store)
    records = store.phase_records("r-1")
    assert [(r.node, r.path, r.status, r.attempts) for r in records] == [(n, p, "pending", 0) for n, p in PLAN]


def test_a_phase_moves_through_start_retry_start_success(store: RunStore, clock: FrozenClock) -> None:
    new_run(store)
    assert start(store, "cp1", "certs/ca", worker="node.cp1@host-a") == Verdict("run", "1")
    run = store.get_run("r-1")
    assert run is not None
    assert (run.status, run.started) == ("running", "2025-03-01T12:00:00.000Z")

    clock.advance(2)
    assert store.retry_phase("r-1", "cp1", "certs/ca", owner="copy-1", error="etcd not ready", delay=5).action == "ok"
    retrying = store.phase_records("r-1")[1]
    assert (retrying.status, retrying.last_error) == ("retrying", "etcd not ready")
    assert retrying.delayed == "2025-03-01T12:00:07.000Z"

    clock.advance(5)
    assert start(store, "cp1", "certs/ca", owner="copy-2", worker="node.cp1@host-b") == Verdict("run", "2")
    clock.advance(1.25)
    assert succeed(store, "cp1", "certs/ca", owner="copy-2") == Verdict("ok", "2")
    done = store.phase_records("r-1")[1]
    assert (done.status, done.attempts, done.worker) == ("succeeded", 2, "node.cp1@host-b")
    assert (done.started, done.finished, done.delayed) == (
        "2025-03-01T12:00:07.000Z", "2025-03-01T12:00:08.250Z", None)
    assert done.duration == 1.25


def test_a_failed_phase_fails_its_run_with_the_error_and_end_time(store: RunStore, clock: FrozenClock) -> None:
    new_run(store)
    start(store, "w1", "preflight")
    clock.advance(3)
    assert store.fail_phase("r-1", "w1", "preflight", owner="copy-1", error="x" * 5000).action == "failed"
    rec = store.phase_records("r-1")[3]
    assert (rec.status, rec.finished, rec.duration) == ("failed", "2025-03-01T12:00:03.000Z", 3.0)
    assert rec.last_error == "x" * 2000  # capped: a summary, not a log
    run = store.get_run("r-1")
    assert run is not None
    assert (run.status, run.finished, run.error) == ("failed", rec.finished, "node w1 phase preflight: " + "x" * 2000)
    assert store.active_runs() == []


def test_a_succeeded_or_skipped_phase_is_final(store: RunStore) -> None:
    new_run(store)
    start(store, "cp1", "preflight")
    succeed(store, "cp1", "preflight")
    store.mark_phase_skipped("r-1", "w1", "preflight", reason="not selected")
    start(store, "cp1", "certs/ca", owner="next")  # the successor was delivered
    events_before = len(store.events("r-1"))
    assert start(store, "cp1", "preflight", owner="late", successor=("cp1", "certs/ca")) == Verdict(
        "ignore", "phase succeeded")
    assert store.mark_phase_skipped("r-1", "w1", "preflight", reason="again").action == "ignore"
    rec = store.phase_records("r-1")[0]
    assert (rec.status, rec.attempts, rec.last_error) == ("succeeded", 1, None)
    assert len(store.events("r-1")) == events_before


def test_a_transition_of_an_unknown_run_fails_and_writes_nothing(store: RunStore, client: redis.Redis) -> None:
    with pytest.raises(NoSuchRunError, match="no such run: r-404"):
        start(store, "cp1", "preflight", run_id="r-404")
    assert client.dbsize() == 0


def test_of_concurrent_copies_of_one_phase_exactly_one_runs_it(store: RunStore) -> None:
    new_run(store)
    barrier = threading.Barrier(12)
    seen: list[Verdict] = []

    def copy(n: int) -> None:
        barrier.wait()
        seen.append(start(store, "cp1", "certs/ca", owner=f"copy-{n}"))

    threads = [threading.Thread(target=copy, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v.action for v in seen) == ["defer"] * 11 + ["run"]
    assert all(0 < v.wait <= 30 for v in seen if v.action == "defer")
    assert store.phase_records("r-1")[1].attempts == 1
    assert [e.attempt for e in store.events("r-1") if e.event == "started"] == [1]


def test_records_outside_the_plan_follow_the_planned_ones(store: RunStore) -> None:
    new_run(store)
    store.mark_phase_skipped("r-1", "cp1", "addon/coredns", reason="--skip-phases")
    assert [(r.node, r.path) for r in store.phase_records("r-1")][-1] == ("cp1", "addon/coredns")


# --- events -----------------------------------------------------------------------------------------
def test_events_come_back_in_write_order_with_their_fields(store: RunStore, clock: FrozenClock) -> None:
    new_run(store)
    start(store, "cp1", "preflight")
    clock.advance(1)
    store.retry_phase("r-1", "cp1", "preflight", owner="copy-1", error="busy", delay=1)
    start(store, "cp1", "preflight", owner="copy-2")
    succeed(store, "cp1", "preflight", owner="copy-2")
    store.mark_phase_skipped("r-1", "w1", "preflight", reason="not selected")
    store.finish_run("r-1", status="succeeded")
    got = [(e.node, e.phase, e.event, e.attempt, e.message) for e in store.events("r-1")]
    assert got == [
        ("", "", "submitted", 0, "init of cluster demo"),
        ("cp1", "preflight", "started", 1, ""),
        ("cp1", "preflight", "retry", 1, "busy"),
        ("cp1", "preflight", "started", 2, ""),
        ("cp1", "preflight", "succeeded", 2, ""),
        ("w1", "preflight", "skipped", 0, "not selected"),
        ("", "", "succeeded", 0, ""),
    ]
    assert store.events("r-1")[2].ts == "2025-03-01T12:00:01.000Z"


def test_events_since_an_id_return_only_later_ones(store: RunStore) -> None:
    new_run(store)
    start(store, "cp1", "preflight")
    seen = store.events("r-1")
    succeed(store, "cp1", "preflight")
    later = store.events("r-1", seen[-1].id)
    assert [e.event for e in later] == ["succeeded"]
    assert store.events("r-1", later[-1].id) == []
    assert [e.event for e in store.events("r-1", seen[-1].id, block_ms=10)] == ["succeeded"]


def test_a_watcher_blocked_on_events_wakes_for_the_next_one(store: RunStore) -> None:
    new_run(store)
    last = store.events("r-1")[-1].id
    got: list[str] = []
    watcher = threading.Thread(target=lambda: got.extend(e.event for e in store.events("r-1", last, block_ms=20_000)))
    watcher.start()
    start(store, "cp1", "preflight")
    watcher.join()
    assert got == ["started"]


# --- secrets ----------------------------------------------------------------------------------------
def dump_everything(client: redis.Redis) -> str:
    """Every value of every key, by type: what someone with access to Redis can read."""
    parts: list[str] = []
    for key in client.scan_iter(count=100):
        kind = client.type(key).decode()
        value: object = {
            "string": client.get, "hash": client.hgetall, "stream": client.xrange, "set": client.smembers,
            "zset": lambda k: client.zrange(k, 0, -1), "list": lambda k: client.lrange(k, 0, -1),
        }[kind](key)
        parts.append(f"{key!r} {value!r}")
    return "\n".join(parts)


def test_no_secret_is_ever_stored_in_clear(store: RunStore, client: redis.Redis) -> None:
    new_run(store)
    store.put_secret("r-1", "ca-key", PEM)
    store.put_secret("r-1", "bootstrap-token", TOKEN)
    store.put_secret("r-1", "certificate-key", bytes.fromhex(CERT_KEY))
    start(store, "cp1", "certs/ca")
    everything = dump_everything(client)
    assert "kubeboot:run:r-1:secret:ca-key" in everything  # the dump does see the secret keys
    for needle in ("BEGIN", "PRIVATE KEY", TOKEN, TOKEN.split(".")[1], CERT_KEY, "bootstrapTokens"):
        assert needle not in everything
    assert not re.search(r"[a-z0-9]{6}\.[a-z0-9]{16}", everything)  # nothing shaped like a bootstrap token


def test_secrets_round_trip_as_bytes(store: RunStore) -> None:
    new_run(store)
    store.put_secret("r-1", "ca-key", PEM)
    assert store.get_secret("r-1", "ca-key") == PEM.encode()
    assert store.get_secret("r-1", "absent") is None


def test_a_secret_copied_to_another_key_does_not_open(store: RunStore, client: redis.Redis) -> None:
    new_run(store)
    store.put_secret("r-1", "bootstrap-token", TOKEN)
    sealed = client.get("kubeboot:run:r-1:secret:bootstrap-token")
    assert sealed is not None
    client.set("kubeboot:run:r-2:secret:bootstrap-token", sealed)
    with pytest.raises(SecretError, match="copied from another key"):
        store.get_secret("r-2", "bootstrap-token")


def test_a_store_with_another_key_cannot_read_secrets_or_config(store: RunStore, client: redis.Redis) -> None:
    new_run(store)
    store.put_secret("r-1", "bootstrap-token", TOKEN)
    intruder = RunStore(client, SecretBox(bytes(32)))
    with pytest.raises(SecretError):
        intruder.get_secret("r-1", "bootstrap-token")
    with pytest.raises(SecretError):
        intruder.run_config("r-1")


def test_a_secret_with_a_ttl_expires_in_redis(store: RunStore, client: redis.Redis) -> None:
    new_run(store)
    store.put_secret("r-1", "certificate-key", CERT_KEY, ttl=7200)
    assert 0 < client.pttl("kubeboot:run:r-1:secret:certificate-key") <= 7_200_000


def test_the_store_works_with_a_decoding_client(redis_server: str, clock: FrozenClock) -> None:
    s = RunStore(redis.Redis.from_url(redis_server, decode_responses=True), SecretBox(KEY), clock=clock)
    new_run(s)
    s.put_secret("r-1", "bootstrap-token", TOKEN)
    assert start(s, "cp1", "preflight").attempts == 1
    assert s.get_secret("r-1", "bootstrap-token") == TOKEN.encode()
    assert s.run_config("r-1") == CONFIG
    assert [e.event for e in s.events("r-1")] == ["submitted", "started"]


def test_finishing_an_unknown_run_fails_and_writes_nothing(store: RunStore, client: redis.Redis) -> None:
    with pytest.raises(NoSuchRunError, match="no such run: r-404"):
        store.finish_run("r-404", status="failed", error="boom")
    assert client.dbsize() == 0


def test_the_phases_a_plan_skips_are_recorded_together_with_their_reasons(store: RunStore) -> None:
    new_run(store)
    verdicts = store.mark_phases_skipped("r-1", [("cp1", "certs/apiserver", "--skip-phases"),
                                                ("w1", "preflight", "not selected")])
    assert [v.action for v in verdicts] == ["ok", "ok"]
    skipped = {(r.node, r.path): r.last_error for r in store.phase_records("r-1") if r.status == "skipped"}
    assert skipped == {("cp1", "certs/apiserver"): "--skip-phases", ("w1", "preflight"): "not selected"}
    assert [(e.phase, e.event) for e in store.events("r-1")][-2:] == [
        ("certs/apiserver", "skipped"), ("preflight", "skipped")]
