"""A run's secrets leave Redis a set time after the run ends, and no message the store records (a phase's
last error, the run's error, their events) holds a secret — against a real redis-server."""

from __future__ import annotations

import time

import pytest
import redis

from kubeboot.tasks.state.secrets import SecretBox
from kubeboot.tasks.state.store import RunStore

KEY = bytes(range(32))
TOKEN = "abcdef.0123456789abcdef"
CERT_KEY = "0123456789abcdef" * 4
PLAN = [("cp1", "preflight"), ("cp1", "upload-certs")]
CONFIG = [{"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration", "clusterName": "demo"}]
TTL = 3600.0
SECRETS = ("bootstrap-token.0", "certificate-key", "admin.conf", "join-command")


@pytest.fixture
def client(redis_server: str) -> redis.Redis:
    return redis.Redis.from_url(redis_server)


@pytest.fixture
def store(client: redis.Redis) -> RunStore:
    return RunStore(client, SecretBox(KEY), secret_ttl=TTL)


def run_with_secrets(store: RunStore) -> str:
    run_id = store.create_run(kind="init", cluster="demo", config=CONFIG, plan=PLAN, run_id="r-1").id
    for name in SECRETS:
        store.put_secret(run_id, name, f"value of {name}")
    return run_id


def ttls(client: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(client.pttl(k)) for k in client.scan_iter("kubeboot:*")}


def test_a_running_runs_secrets_do_not_expire(store: RunStore, client: redis.Redis) -> None:
    run_with_secrets(store)
    secret_keys = {k: t for k, t in ttls(client).items() if ":secret" in k}
    assert set(secret_keys) == {f"kubeboot:run:r-1:secret:{n}" for n in SECRETS} | {"kubeboot:run:r-1:secrets"}
    assert set(secret_keys.values()) == {-1}


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_when_a_run_ends_every_secret_expires_after_the_secret_ttl_and_nothing_else_does(
    store: RunStore, client: redis.Redis, status: str
) -> None:
    run_id = run_with_secrets(store)
    store.finish_run(run_id, status=status, error="boom" if status == "failed" else "")
    found = ttls(client)
    expiring = {k for k, t in found.items() if t != -1}
    assert expiring == {f"kubeboot:run:r-1:secret:{n}" for n in SECRETS} | {"kubeboot:run:r-1:secrets"}
    assert all(TTL * 1000 - 60_000 < found[k] <= TTL * 1000 for k in expiring)
    # The run's record, phases and events stay: `kubeboot status` still shows the run.
    assert {"kubeboot:run:r-1", "kubeboot:run:r-1:phases", "kubeboot:run:r-1:events"} <= set(found) - expiring
    assert store.get_secret(run_id, "join-command") == b"value of join-command"  # until then, readable


def test_a_resumed_run_keeps_its_secrets_until_it_ends_again(store: RunStore, client: redis.Redis) -> None:
    run_id = run_with_secrets(store)
    store.finish_run(run_id, status="failed", error="boom")
    store.reopen_run(run_id)
    assert {t for k, t in ttls(client).items() if ":secret" in k} == {-1}
    store.put_secret(run_id, "upload-certs-token", "later")  # a secret added on the resumed run
    store.finish_run(run_id, status="succeeded")
    assert client.pttl("kubeboot:run:r-1:secret:upload-certs-token") > 0


def test_expired_secrets_are_gone_and_the_run_remains(client: redis.Redis) -> None:
    store = RunStore(client, SecretBox(KEY), secret_ttl=0.05)
    run_id = run_with_secrets(store)
    store.finish_run(run_id, status="succeeded")
    deadline = time.monotonic() + 30  # a bound on Redis's expiry, not a timing assertion
    while any(":secret" in k.decode() for k in client.scan_iter("kubeboot:*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [k for k in client.scan_iter("kubeboot:*") if b":secret" in k] == []
    assert store.get_secret(run_id, "join-command") is None
    run = store.get_run(run_id)
    assert run is not None and run.status == "succeeded"


def test_errors_and_events_are_recorded_without_token_secret_or_certificate_key(store: RunStore) -> None:
    run_id = run_with_secrets(store)
    phase = (run_id, "cp1", "upload-certs")
    store.claim_phase(*phase, owner="copy-1", worker="w", max_attempts=3, lease=30)
    store.retry_phase(*phase, owner="copy-1", error=f"token {TOKEN} refused", delay=1)
    store.claim_phase(*phase, owner="copy-2", worker="w", max_attempts=3, lease=30)
    store.fail_phase(*phase, owner="copy-2", error=f"--certificate-key {CERT_KEY} rejected")
    other = store.create_run(kind="init", cluster="demo", config=CONFIG, plan=PLAN, run_id="r-2").id
    store.finish_run(other, status="failed", error=f"phase upload-certs: token {TOKEN}, certificate key {CERT_KEY}")
    record = next(r for r in store.phase_records(run_id) if r.path == "upload-certs")
    assert record.last_error == "--certificate-key <redacted> rejected"
    run = store.get_run(run_id)
    assert run is not None and run.error == "node cp1 phase upload-certs: --certificate-key <redacted> rejected"
    ended = store.get_run(other)
    assert ended is not None
    assert ended.error == "phase upload-certs: token abcdef.<redacted>, certificate key <redacted>"
    messages = [e.message for run in (run_id, other) for e in store.events(run)]
    assert "token abcdef.<redacted> refused" in messages
    assert not [m for m in messages if TOKEN in m or CERT_KEY in m]
