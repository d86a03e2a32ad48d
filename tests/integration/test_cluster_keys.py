"""Per-cluster data keys (``tasks.state.clusterkeys``) on a real Redis: one key per cluster however many
control-side processes ask for it at once, a wrapped key bound to its cluster's name, and a deleted key
taking every value sealed with it along (crypto-shredding)."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest
import redis

from kubeboot.tasks.state import RunStore
from kubeboot.tasks.state.clusterkeys import ClusterKeys, cluster_key_name
from kubeboot.tasks.state.secrets import SecretError
from kubeboot.tasks.trust.keyring import control_keyring
from kubeboot.tasks.trust.keys import ControlKeys

pytestmark = pytest.mark.integration
MASTER = bytes(range(32))
WRAP = ControlKeys(MASTER).wrap
CALLERS = 6
DEADLINE = 60.0  # bound of every wait; never an assertion

# One control-side process: waits until every racer is up, then asks for the cluster's key.
RACER = """
import sys, redis
from kubeboot.tasks.state.clusterkeys import ClusterKeys
client = redis.Redis.from_url(sys.argv[1])
client.incr("racers:up")
client.blpop(["racers:go"], timeout=60)
print(ClusterKeys(client, bytes.fromhex(sys.argv[2])).get("race").hex())
"""


class AllSeeItMissing:
    """A Redis client whose first GET returns only once every caller has done its own: each caller finds
    the key absent and makes one, so every one of them races to store it (the window, made certain)."""

    def __init__(self, url: str, barrier: threading.Barrier, stored: list[bool]) -> None:
        self._r = redis.Redis.from_url(url)
        self._barrier, self._stored, self._first = barrier, stored, True

    def get(self, name: str) -> Any:
        value = self._r.get(name)
        if self._first:
            self._first = False
            self._barrier.wait(DEADLINE)
        return value

    def set(self, *args: Any, **kwargs: Any) -> Any:
        won = self._r.set(*args, **kwargs)
        self._stored.append(bool(won))
        return won


def test_threads_that_all_find_no_key_end_up_with_the_one_key_stored(redis_server: str) -> None:
    barrier, stored, keys = threading.Barrier(CALLERS), [], []

    def caller() -> None:
        keys.append(ClusterKeys(AllSeeItMissing(redis_server, barrier, stored), WRAP).get("race"))  # type: ignore[arg-type]

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert sorted(stored) == [False] * (CALLERS - 1) + [True]  # every caller made a key; one was stored
    assert len(keys) == CALLERS and len(set(keys)) == 1
    assert ClusterKeys(redis.Redis.from_url(redis_server), WRAP).get("race") == keys[0]


def test_processes_started_at_once_all_use_the_one_key_stored(redis_server: str) -> None:
    client = redis.Redis.from_url(redis_server)
    racers = [subprocess.Popen([sys.executable, "-c", RACER, redis_server, WRAP.hex()], stdout=subprocess.PIPE,
                               text=True) for _ in range(CALLERS)]
    try:
        for _ in range(int(DEADLINE * 20)):
            if int(client.get("racers:up") or 0) == CALLERS:
                break
            threading.Event().wait(0.05)
        client.rpush("racers:go", *["go"] * CALLERS)
        outputs = [racer.communicate(timeout=DEADLINE)[0].strip() for racer in racers]
    finally:
        for racer in racers:
            racer.kill()
            racer.wait()
    assert all(racer.returncode == 0 for racer in racers)
    assert len(set(outputs)) == 1 and len(bytes.fromhex(outputs[0])) == 32
    assert ClusterKeys(client, WRAP).get("race").hex() == outputs[0]


def test_the_stored_key_is_wrapped_and_bound_to_its_clusters_name(redis_server: str) -> None:
    client = redis.Redis.from_url(redis_server)
    key = ClusterKeys(client, WRAP).get("alpha")
    stored = client.get(cluster_key_name("alpha"))
    assert stored is not None and stored.startswith(b"k1:") and key not in stored
    client.set(cluster_key_name("beta"), stored)  # alpha's wrapped key copied under beta's name
    with pytest.raises(SecretError, match="kubeboot:cluster:beta:key: cannot decrypt"):
        ClusterKeys(client, WRAP).get("beta")
    with pytest.raises(SecretError, match="kubeboot:cluster:alpha:key: cannot decrypt"):
        ClusterKeys(client, ControlKeys(bytes(32)).wrap).get("alpha")  # another master key's wrap
    assert ClusterKeys(client, WRAP).get("alpha") == key


def test_deleting_a_clusters_key_leaves_its_sealed_values_unreadable_and_no_other_clusters(redis_server) -> None:
    client = redis.Redis.from_url(redis_server)
    config = [{"kind": "InitConfiguration", "bootstrapTokens": [{"token": "abcdef.0123456789abcdef"}]}]
    writer = RunStore(client, control_keyring(MASTER))
    for run_id, cluster in (("r-shred001", "doomed"), ("r-keep0001", "kept")):
        writer.create_run(kind="init", cluster=cluster, config=config, plan=[], run_id=run_id)
        writer.put_secret(run_id, "admin.conf", b"admin of " + cluster.encode())
    client.delete(cluster_key_name("doomed"))

    reader = RunStore(client, control_keyring(MASTER))  # a control-side process started after the deletion
    with pytest.raises(SecretError, match="cannot decrypt"):
        reader.run_config("r-shred001")
    with pytest.raises(SecretError, match="cannot decrypt"):
        reader.get_secret("r-shred001", "admin.conf")
    assert reader.run_config("r-keep0001") == config
    assert reader.get_secret("r-keep0001", "admin.conf") == b"admin of kept"
    # The cluster goes on with a new key: what is sealed from now on reads back.
    reader.create_run(kind="init", cluster="doomed", config=config, plan=[], run_id="r-after001")
    assert RunStore(client, control_keyring(MASTER)).run_config("r-after001") == config
