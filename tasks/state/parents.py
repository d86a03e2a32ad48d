"""Parent runs: a ``cluster`` run owns child ``init``/``join`` runs, a ``batch`` run owns ``cluster`` runs.

A parent is a run like any other (``tasks.state.store``: hash, phases hash, events, secrets, indexes);
its "phases" are its steps, one per child: ``<node>|init`` / ``<node>|join`` for a cluster, ``<cluster
name>|cluster`` for a batch, with the same fields as a phase (status, attempts, started, finished,
last_error) plus ``…|child``, the child run's id. A child's id extends its parent's (``<batch>.<cluster>``,
``<cluster run>.<node>``), so searching Flower for a batch or cluster id finds every task under it:
tasks carry the run id in their arguments.

| key                                  | type   | content                                                   |
|--------------------------------------|--------|-----------------------------------------------------------|
| ``kubeboot:run:<id>`` (extra fields) | hash   | ``parent``: the parent run's id (a child); ``batch``: the |
|                                      |        | batch a run belongs to; ``route``: JSON ``{"nodes":       |
|                                      |        | {node: queue}, "control": queue}``; ``dry_run``: "1";     |
|                                      |        | ``done``: nodes / clusters done (a parent);               |
|                                      |        | ``concurrency``: a batch's bound                          |
|                                      |        | (``…|waiting`` in its phases hash: since when a step's    |
|                                      |        | child waits for a worker on its queue)                    |
| ``kubeboot:parents:due``             | zset   | parent run id, score = when (epoch ms, Redis time) a      |
|                                      |        | control worker's sweep looks at it again                  |
| ``kubeboot:batch:<id>:running``      | set    | clusters holding one of the batch's concurrency slots     |
| ``kubeboot:batch:<id>:next``         | string | index in the plan of the next cluster never started       |
| ``kubeboot:batch:<id>:again``        | list   | failed clusters a resume put back in line for a slot      |

Progress is event-driven: when a run ends, the process that ended it (``RunStore._run_ended``) calls
the hooks registered here (``on_run_end``); the workers register one that sends the parent's
``advance`` task. A hook lost with its process is made up for by the sweep of ``parents:due``.
Step writes are one Lua script each (``STEP``), refused once the parent has ended; slots are taken
and given back by one script each (``TAKE``, ``RELEASE``), so two finishing clusters never start the
same next cluster, and the batch never exceeds its concurrency.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import redis
from redis.typing import EncodableT, FieldT

from kubeboot.tasks.redaction import redact
from kubeboot.tasks.state.keys import PARENTS_DUE, batch_slots_key, run_key
from kubeboot.tasks.state.records import text

if TYPE_CHECKING:
    from kubeboot.tasks.state.store import RunStore

log = logging.getLogger("kubeboot.parents")
EVENTS_MAXLEN: Final = 10_000
ERROR_MAX_CHARS: Final = 2_000

# KEYS: run, phases, events. ARGV: node, step, now, status, message, child, events maxlen.
# Replies 'ok' or 'ignore' (the parent ended, or the step is already in that final status).
STEP = """
local RUN, PHASES, EVENTS = KEYS[1], KEYS[2], KEYS[3]
local NODE, STEP, NOW, STATUS, MESSAGE, CHILD = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local P = NODE .. '|' .. STEP .. '|'
local run_status = redis.call('HGET', RUN, 'status')
if not run_status then return redis.error_reply('no such run: ' .. RUN) end
if run_status ~= 'pending' and run_status ~= 'running' then return 'ignore' end
local f = redis.call('HMGET', PHASES, P .. 'status', P .. 'attempts', P .. 'child')
local cur = f[1] or 'pending'
if cur == STATUS and (STATUS ~= 'running' or f[3] == CHILD) then return 'ignore' end
local attempts = tonumber(f[2] or '0')
if STATUS == 'running' then
  attempts = attempts + 1
  redis.call('HSET', PHASES, P .. 'status', STATUS, P .. 'started', NOW, P .. 'attempts', attempts,
    P .. 'child', CHILD)
  redis.call('HDEL', PHASES, P .. 'finished', P .. 'last_error')
elseif STATUS == 'pending' then
  redis.call('HSET', PHASES, P .. 'status', STATUS)
  redis.call('HDEL', PHASES, P .. 'finished', P .. 'last_error')
else
  redis.call('HSET', PHASES, P .. 'status', STATUS, P .. 'finished', NOW)
  if MESSAGE ~= '' then redis.call('HSET', PHASES, P .. 'last_error', MESSAGE) end
end
if run_status == 'pending' then redis.call('HSET', RUN, 'status', 'running', 'started', NOW) end
local event = STATUS
if STATUS == 'running' then event = 'started' end
redis.call('XADD', EVENTS, 'MAXLEN', '~', ARGV[7], '*', 'ts', NOW, 'node', NODE, 'phase', STEP,
  'event', event, 'attempt', attempts, 'message', MESSAGE)
return 'ok'
"""

# KEYS: running set, next counter, again list. ARGV: concurrency, then the plan's names in order.
# Takes slots while the batch has fewer than `concurrency` clusters running: first clusters a resume put
# back in line, then never-started ones. Replies the names it started (each exactly once).
TAKE = """
local limit = tonumber(ARGV[1])
local taken = {}
while redis.call('SCARD', KEYS[1]) < limit do
  local name = redis.call('LPOP', KEYS[3])
  if not name then
    local i = tonumber(redis.call('GET', KEYS[2]) or '0')
    if i >= #ARGV - 1 then break end
    name = ARGV[i + 2]
    redis.call('SET', KEYS[2], i + 1)
  end
  if redis.call('SADD', KEYS[1], name) == 1 then table.insert(taken, name) end
end
return taken
"""


@dataclass(frozen=True)
class Slots:
    running: frozenset[str]
    started: int  # plan entries ever started (the ``next`` counter)
    again: tuple[str, ...]


RunEndHook = Callable[["RunStore", str], None]
_END_HOOKS: list[RunEndHook] = []


def on_run_end(hook: RunEndHook) -> None:
    """Call ``hook(store, run_id)`` in this process whenever a run ends here (registered once per hook)."""
    if hook not in _END_HOOKS:
        _END_HOOKS.append(hook)


def run_ended(store: RunStore, run_id: str) -> None:
    """Called by the store after a transition ended ``run_id``: the hooks never break that transition."""
    for hook in list(_END_HOOKS):
        try:
            hook(store, run_id)
        except Exception:  # the sweep of parents:due makes up for a hook that failed
            log.exception("run %s ended, but telling its parent failed", run_id)


class Parents:
    """Reads and writes the parent-run fields and keys above (one instance per Redis client)."""

    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._step = client.register_script(STEP)
        self._take = client.register_script(TAKE)

    # --- steps ------------------------------------------------------------------------------------
    def set_step(self, run_id: str, node: str, step: str, status: str, *, now: str, message: str = "",
                 child: str = "") -> bool:
        """Move a parent's step to ``status`` (running / succeeded / failed / pending); False if refused."""
        key = run_key(run_id)
        reply: Any = self._step(keys=[key, f"{key}:phases", f"{key}:events"],
                                args=[node, step, now, status, redact(message)[:ERROR_MAX_CHARS], child,
                                      EVENTS_MAXLEN])
        return text(reply) == "ok"

    def waiting_since(self, run_id: str, node: str, step: str, now: str) -> str:
        """When the step's child was first seen waiting for a worker (set now if it was not)."""
        key, field = f"{run_key(run_id)}:phases", f"{node}|{step}|waiting"
        self._r.hsetnx(key, field, now)
        return text(self._r.hget(key, field) or now)

    def clear_waiting(self, run_id: str, node: str, step: str) -> None:
        self._r.hdel(f"{run_key(run_id)}:phases", f"{node}|{step}|waiting")

    def fields(self, run_id: str, *names: str) -> dict[str, str | None]:
        values = self._r.hmget(run_key(run_id), list(names))
        return {n: text(v) if v is not None else None for n, v in zip(names, values, strict=True)}

    def set_fields(self, run_id: str, **values: str | int) -> None:
        mapping: dict[FieldT, EncodableT] = dict(values.items())
        self._r.hset(run_key(run_id), mapping=mapping)

    def count_done(self, run_id: str) -> None:
        self._r.hincrby(run_key(run_id), "done", 1)

    def statuses(self, run_ids: list[str], *names: str) -> list[dict[str, str | None]]:
        """``status`` and ``names`` of many runs in one round trip (absent runs: status None)."""
        fields = ("status", *names)
        with self._r.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hmget(run_key(run_id), list(fields))
            rows = pipe.execute()
        return [{f: text(v) if v is not None else None for f, v in zip(fields, row, strict=True)} for row in rows]

    # --- the sweep ----------------------------------------------------------------------------------
    def schedule(self, run_id: str, delay: float) -> None:
        """Look at the parent again in ``delay`` seconds (or sooner if already due sooner)."""
        self._r.zadd(PARENTS_DUE, {run_id: self._now_ms() + int(delay * 1000)}, lt=True)

    def reschedule(self, run_id: str, delay: float) -> None:
        """Look at the parent again in exactly ``delay`` seconds."""
        self._r.zadd(PARENTS_DUE, {run_id: self._now_ms() + int(delay * 1000)})

    def unschedule(self, run_id: str) -> None:
        self._r.zrem(PARENTS_DUE, run_id)

    def claim_due(self, delay: float, limit: int = 200) -> list[str]:
        """Parents whose time came; each is moved ``delay`` seconds on by exactly one caller (ZADD XX GT
        compare-and-set is not atomic over a read, so each move is checked by its score)."""
        now = self._now_ms()
        due: Any = self._r.zrangebyscore(PARENTS_DUE, "-inf", now, start=0, num=limit, withscores=True)
        claimed = []
        for member, score in due:
            later = now + int(delay * 1000)
            if self._postpone(text(member), float(score), later):
                claimed.append(text(member))
        return claimed

    def _postpone(self, member: str, seen: float, later: int) -> bool:
        script = "local s = redis.call('ZSCORE', KEYS[1], ARGV[1]) " \
                 "if not s or tonumber(s) ~= tonumber(ARGV[2]) then return 0 end " \
                 "redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) return 1"
        return bool(self._r.eval(script, 1, PARENTS_DUE, member, int(seen), later))

    def _now_ms(self) -> int:
        seconds, micros = self._r.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # --- batch slots --------------------------------------------------------------------------------
    def take_slots(self, batch_id: str, concurrency: int, names: list[str]) -> list[str]:
        keys = [batch_slots_key(batch_id, p) for p in ("running", "next", "again")]
        taken: Any = self._take(keys=keys, args=[concurrency, *names])
        return [text(n) for n in taken]

    def release_slot(self, batch_id: str, name: str) -> bool:
        """Give the cluster's slot back; True for the one caller that did (idempotent)."""
        return bool(self._r.srem(batch_slots_key(batch_id, "running"), name))

    def requeue(self, batch_id: str, names: list[str]) -> None:
        """Put clusters back in line for a slot (a resume), each once."""
        if not names:
            return
        again = batch_slots_key(batch_id, "again")
        queued = {text(n) for n in self._r.lrange(again, 0, -1)}
        fresh = [n for n in dict.fromkeys(names) if n not in queued]
        if fresh:
            self._r.rpush(again, *fresh)

    def slots(self, batch_id: str) -> Slots:
        with self._r.pipeline(transaction=False) as pipe:
            pipe.smembers(batch_slots_key(batch_id, "running"))
            pipe.get(batch_slots_key(batch_id, "next"))
            pipe.lrange(batch_slots_key(batch_id, "again"), 0, -1)
            running, started, again = pipe.execute()
        return Slots(frozenset(text(n) for n in running), int(started or 0), tuple(text(n) for n in again))
