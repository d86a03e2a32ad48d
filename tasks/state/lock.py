"""Cluster-wide mutual exclusion on Redis: one ``init`` per cluster, one control-plane join at a time
(``tasks.joinrun``: etcd admits one learner member at a time).

Modelled on Cluster API's control-plane init mutex (first creator wins, re-entrant for its holder,
recoverable when the holder is gone), with Redis in place of a ConfigMap and a TTL in place of an
owner reference.

| key                                           | type    | content                                    |
|-----------------------------------------------|---------|--------------------------------------------|
| ``kubeboot:cluster:<name>:lock:<purpose>``    | string  | JSON ``{"owner": run id, "token": int,     |
|                                               |         | "acquired_at": UTC ISO 8601}``, PX = ttl   |
| ``kubeboot:cluster:<name>:lock:<purpose>:fence`` | string | counter of fencing tokens; never expires |

- ``acquire(run_id)`` returns a fencing token. A free lock gets a NEW token (INCR of the fence
  counter), so every change of holder carries a strictly larger token. The same run acquiring again
  (a retried or resumed task) keeps its token and refreshes the TTL: it is the same holding, and
  anything it stamped with the token stays valid. Any other run gets ``LockHeldError`` naming the
  holder. Check and set are one Lua script, so of N concurrent callers exactly one wins.
- ``release`` acts only while the caller is still the owner (compare-and-delete): a holder whose lease
  lapsed cannot delete its successor's lock.
- The token fences the run's writes: the run records the (key, token) it holds (``RunStore.create_run``
  ``lock=``), and every transition script of the run store renews the lease and checks that the lock
  still carries that token (``tasks.state.scripts``: ``hold_lock``), in the same round trip as the
  write. A run whose lease lapsed while nobody took the cluster re-takes it with a new token; a run
  whose cluster another run took over writes nothing more and ends ``failed`` ("superseded").
- A holder is gone when its TTL lapses (the key expires), or when ``release_if_owner_finished`` sees
  that the owner run has finished or failed (like Cluster API unlocking when the holding Machine no
  longer exists). An owner the store does not know is NOT gone: a submitter takes the lock before it
  records the run, so "unknown" may mean "about to exist"; such a lock lapses with its TTL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import redis

from kubeboot.tasks.state.keys import check_name, lock_key
from kubeboot.tasks.state.records import iso, text
from kubeboot.tasks.state.store import RUN_FINAL

# KEYS: lock, fence. ARGV: owner, ttl ms, now. Returns {token, holder json, acquired 1|0}.
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local holder = cjson.decode(cur)
  if holder.owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {holder.token, cur, 1}
  end
  return {holder.token, cur, 0}
end
local token = redis.call('INCR', KEYS[2])
local value = cjson.encode({owner = ARGV[1], token = token, acquired_at = ARGV[3]})
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {token, value, 1}
"""

# KEYS: lock. ARGV: owner, token ('' = any). Returns 1 if it deleted the lock.
_RELEASE = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local holder = cjson.decode(cur)
if holder.owner ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and tostring(holder.token) ~= ARGV[2] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class RunStatusSource(Protocol):
    def run_status(self, run_id: str) -> str | None: ...


@dataclass(frozen=True)
class LockHolder:
    owner: str
    token: int
    acquired_at: str

    @classmethod
    def from_json(cls, raw: str) -> LockHolder:
        data = json.loads(raw)
        return cls(owner=str(data["owner"]), token=int(data["token"]), acquired_at=str(data["acquired_at"]))


class LockHeldError(Exception):
    """The lock belongs to another run; the message says which and since when."""

    def __init__(self, message: str, holder: LockHolder) -> None:
        super().__init__(message)
        self.holder = holder


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SerialLock:
    """One holder at a time for ``purpose`` in ``cluster``; ``ttl`` in seconds (fractions allowed).

    ``activity`` reads in error messages: "cluster demo <activity> run r-1 since ...".
    """

    def __init__(
        self,
        client: redis.Redis,
        cluster: str,
        purpose: str,
        ttl: float,
        *,
        activity: str,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.cluster = check_name("cluster name", cluster)
        self.key = lock_key(cluster, purpose)
        self.ttl_ms = max(1, round(ttl * 1000))
        self._activity = activity  # completes "cluster <name> <activity> run <id> since ..."
        self._r = client
        self._clock = clock
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    def acquire(self, run_id: str) -> int:
        token, raw, acquired = self._acquire(
            keys=[self.key, f"{self.key}:fence"], args=[run_id, self.ttl_ms, iso(self._clock())]
        )
        if not int(acquired):
            holder = LockHolder.from_json(text(raw))
            raise LockHeldError(self.describe(holder), holder)
        return int(token)

    def release(self, run_id: str, *, token: int | None = None) -> bool:
        """Delete the lock if ``run_id`` (and ``token``, when given) still holds it."""
        return bool(self._release(keys=[self.key], args=[run_id, "" if token is None else str(token)]))

    def holder(self) -> LockHolder | None:
        raw = self._r.get(self.key)
        return None if raw is None else LockHolder.from_json(text(raw))

    def release_if_owner_finished(self, runs: RunStatusSource) -> LockHolder | None:
        """Free the lock when its owner run has succeeded or failed; returns the holder it freed."""
        holder = self.holder()
        if holder is None or runs.run_status(holder.owner) not in RUN_FINAL:
            return None
        # The token pins the holding we judged: if the lock changed hands meanwhile, it is left alone.
        return holder if self.release(holder.owner, token=holder.token) else None

    def describe(self, holder: LockHolder) -> str:
        return (
            f"cluster {self.cluster} {self._activity} run {holder.owner} "
            f"since {holder.acquired_at} (lock token {holder.token})"
        )


class InitLock(SerialLock):
    """Exactly one run initialises a cluster (runs ``kubeadm init`` on its first control plane)."""

    def __init__(
        self, client: redis.Redis, cluster: str, ttl: float, *, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        super().__init__(client, cluster, "init", ttl, activity="is being initialised by", clock=clock)


def control_plane_join_lock(
    client: redis.Redis, cluster: str, ttl: float, *, clock: Callable[[], datetime] = _utc_now
) -> SerialLock:
    """Control-plane joins of a cluster go one at a time: etcd admits one learner member at a time."""
    activity = "is adding a control-plane node for"
    return SerialLock(client, cluster, "join-control-plane", ttl, activity=activity, clock=clock)
