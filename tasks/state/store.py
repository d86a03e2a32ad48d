"""Run state in Redis: runs, per-(run, node, phase) records, an event stream per run, sealed secrets.

Reads and writes only Redis keys under ``kubeboot:``. Every write that touches more than one key or
field is atomic: phase transitions are one Lua script (record + run status + event), run creation and
completion are MULTI/EXEC pipelines. Timestamps are UTC ISO 8601 with milliseconds and ``Z``.

| key                                   | type   | field / entry     | meaning                                         |
|---------------------------------------|--------|-------------------|-------------------------------------------------|
| ``kubeboot:runs``                     | zset   | member run id     | every run; score = created, epoch seconds       |
| ``kubeboot:cluster:<name>:runs``      | zset   | member run id     | the runs of one cluster; same score             |
| ``kubeboot:run:<id>``                 | hash   | id                | the run id (``r-`` + 8 hex unless given)        |
|                                       |        | kind              | ``init`` / ``join`` / ``batch``                 |
|                                       |        | cluster           | cluster name (the batch name for a batch)       |
|                                       |        | spec_digest       | sha256 hex of the normalised config (below)     |
|                                       |        | status            | pending → running → succeeded / failed          |
|                                       |        | created           | when submitted                                  |
|                                       |        | started           | when the first phase started (absent before)    |
|                                       |        | finished          | when the run ended (absent while not ended)     |
|                                       |        | error             | one-line summary of why it failed (if it did)   |
|                                       |        | nodes             | JSON list of node names, in plan order          |
|                                       |        | plan              | JSON list of ``[node, phase path]``, run order  |
|                                       |        | config            | the config documents, ENCRYPTED (see below)     |
| ``kubeboot:run:<id>:phases``          | hash   | ``<node>|<path>|status``   | pending / running / retrying /         |
|                                       |        |                   | succeeded / failed / skipped                    |
|                                       |        | ``…|attempts``    | times the phase was started, counted here       |
|                                       |        | ``…|worker``      | hostname of the worker of the last attempt      |
|                                       |        | ``…|started``     | start of the last attempt                       |
|                                       |        | ``…|finished``    | end of the phase (absent while not ended)       |
|                                       |        | ``…|delayed``     | when the next attempt is due (while retrying)   |
|                                       |        | ``…|last_error``  | message of the last failure or retry            |
| ``kubeboot:run:<id>:events``          | stream | ts, node, phase,  | one entry per transition, capped ~10000;        |
|                                       |        | event, attempt,   | event: started / succeeded / retry / failed /   |
|                                       |        | message           | skipped; run-level entries have empty node and  |
|                                       |        |                   | phase: submitted / resumed / succeeded / failed |
| ``kubeboot:run:<id>:secret:<name>``   | string | –                 | sealed secret (``tasks.state.secrets``)         |
| ``kubeboot:run:<id>:secrets``         | set    | member name       | the names of the run's secrets (to expire them) |

A run's secrets expire: when the run finishes (succeeded or failed) every ``secret:<name>`` key and the
``secrets`` set get an EXPIRE of ``secret_ttl`` seconds (``KUBEBOOT_SECRET_TTL``, default 24 h); a
resumed run makes them persistent again. The run's record, phases and events stay.

Choices, and why:
- One phases hash per run with ``<node>|<path>|<field>`` names rather than one hash per phase: a whole
  run's status is one HGETALL, and a transition stays inside three keys of one run for the script.
  ``|`` cannot occur in node names (DNS names) or phase paths.
- ``attempts`` is counted by the store, not taken from Celery's retry counter: a task redelivered after
  its worker died keeps ``retries`` unchanged but is a new attempt, and a phase that kills its worker
  every time must still run out of attempts.
- A phase recorded ``succeeded`` or ``skipped`` is final: later transitions are ignored (and return
  None). ``mark_phase_started`` returning None is the atomic "already done, skip it" that a resumed or
  redelivered task relies on.
- ``duration`` is not stored; it is ``finished - started`` of the last attempt, derived on read.
- The config is stored encrypted whole rather than with tokens stripped: kubeadm documents carry
  bootstrap tokens, certificate keys and discovery tokens in several places, and encrypting everything
  cannot miss one. ``spec_digest`` is SHA-256 over canonical JSON (sorted keys, no spaces); the tokens
  inside have ~80 bits of entropy, so the digest does not reveal them.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from kubeboot.config import constants as c
from kubeboot.config.settings import DEFAULT_SECRET_TTL
from kubeboot.tasks.redaction import redact
from kubeboot.tasks.state.records import Event, PhaseRecord, RunRecord, iso, text
from kubeboot.tasks.state.secrets import SecretBox

PREFIX = c.STATE_KEY_PREFIX
RUNS_INDEX = f"{PREFIX}runs"
EVENTS_MAXLEN = 10_000
ERROR_MAX_CHARS = 2_000  # errors are summaries; a traceback belongs in the worker log
RUN_KINDS = ("init", "join", "batch")
RUN_FINAL = ("succeeded", "failed")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # no ':' so one name cannot forge another's key

# One transition of one phase record, its run's status and its event, all or nothing.
# KEYS: run hash, phases hash, events stream.
# ARGV: node, path, event, now, worker, message, delayed, maxlen. Returns attempts, or -1 if ignored.
_TRANSITION = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('no such run: ' .. KEYS[1]) end
local p = ARGV[1] .. '|' .. ARGV[2] .. '|'
local event, now, message = ARGV[3], ARGV[4], ARGV[6]
local status = redis.call('HGET', KEYS[2], p .. 'status')
if status == 'succeeded' or status == 'skipped' then return -1 end
local attempts = tonumber(redis.call('HGET', KEYS[2], p .. 'attempts') or '0')
if event == 'started' then
  attempts = redis.call('HINCRBY', KEYS[2], p .. 'attempts', 1)
  redis.call('HSET', KEYS[2], p .. 'status', 'running', p .. 'worker', ARGV[5], p .. 'started', now)
  redis.call('HDEL', KEYS[2], p .. 'finished', p .. 'delayed')
  if redis.call('HGET', KEYS[1], 'status') == 'pending' then
    redis.call('HSET', KEYS[1], 'status', 'running', 'started', now)
  end
elseif event == 'retry' then
  redis.call('HSET', KEYS[2], p .. 'status', 'retrying', p .. 'last_error', message, p .. 'delayed', ARGV[7])
elseif event == 'failed' then
  redis.call('HSET', KEYS[2], p .. 'status', 'failed', p .. 'last_error', message, p .. 'finished', now)
  redis.call('HDEL', KEYS[2], p .. 'delayed')
else
  redis.call('HSET', KEYS[2], p .. 'status', event, p .. 'finished', now)
  redis.call('HDEL', KEYS[2], p .. 'delayed')
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'ts', now, 'node', ARGV[1], 'phase', ARGV[2],
  'event', event, 'attempt', attempts, 'message', message)
return attempts
"""


class RunExistsError(Exception):
    """A run with this id already exists."""


def spec_digest(config: Any) -> str:
    """SHA-256 of the config documents as canonical JSON: equal specs, equal digests."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_run_id() -> str:
    return "r-" + secrets.token_hex(4)


def run_key(run_id: str) -> str:
    return f"{PREFIX}run:{run_id}"


def cluster_runs_key(cluster: str) -> str:
    return f"{PREFIX}cluster:{cluster}:runs"


def check_name(kind: str, value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"invalid {kind} {value!r}: use letters, digits, '.', '_' and '-'")
    return value


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RunStore:
    """The one reader and writer of run state. ``clock`` is injectable so tests freeze time."""

    def __init__(self, client: redis.Redis, box: SecretBox, *, clock: Callable[[], datetime] = _utc_now,
                 secret_ttl: float = DEFAULT_SECRET_TTL) -> None:
        self._r = client
        self._box = box
        self._clock = clock
        self._secret_ttl = secret_ttl
        self._transition = client.register_script(_TRANSITION)

    # --- runs ---------------------------------------------------------------------------------
    def create_run(
        self, *, kind: str, cluster: str, config: Any, plan: Sequence[tuple[str, str]], run_id: str | None = None
    ) -> RunRecord:
        if kind not in RUN_KINDS:
            raise ValueError(f"invalid run kind {kind!r}: one of {', '.join(RUN_KINDS)}")
        run_id = check_name("run id", run_id or new_run_id())
        check_name("cluster name", cluster)
        key, created = run_key(run_id), self._clock()
        nodes = list(dict.fromkeys(node for node, _ in plan))
        fields: dict[FieldT, EncodableT] = {
            "id": run_id, "kind": kind, "cluster": cluster, "spec_digest": spec_digest(config),
            "status": "pending", "created": iso(created), "nodes": json.dumps(nodes),
            "plan": json.dumps([[n, p] for n, p in plan]),
            "config": self._box.encrypt(json.dumps(config).encode(), aad=f"{key}#config"),
        }
        seed: dict[FieldT, EncodableT] = {f"{_field_prefix(n, p)}status": "pending" for n, p in plan}
        with self._r.pipeline() as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]  # creation is refused, not merged, if the id exists (or appears meanwhile)
                if pipe.exists(key):
                    raise RunExistsError(f"run {run_id} already exists")
                pipe.multi()
                pipe.hset(key, mapping=fields)
                if seed:
                    pipe.hset(f"{key}:phases", mapping=seed)
                pipe.zadd(RUNS_INDEX, {run_id: created.timestamp()})
                pipe.zadd(cluster_runs_key(cluster), {run_id: created.timestamp()})
                self._run_event(pipe, key, "submitted", f"{kind} of cluster {cluster}")
                pipe.execute()
            except redis.WatchError:
                raise RunExistsError(f"run {run_id} already exists") from None
        record = self.get_run(run_id)
        assert record is not None  # just written in the same transaction
        return record

    def get_run(self, run_id: str) -> RunRecord | None:
        raw = self._r.hgetall(run_key(run_id))
        return RunRecord.from_hash({text(k): text(v) for k, v in raw.items()}) if raw else None

    def run_status(self, run_id: str) -> str | None:
        value = self._r.hget(run_key(run_id), "status")
        return None if value is None else text(value)

    def run_config(self, run_id: str) -> Any:
        key = run_key(run_id)
        sealed = self._r.hget(key, "config")
        if sealed is None:
            raise KeyError(f"no such run: {run_id}")
        return json.loads(self._box.decrypt(sealed, aad=f"{key}#config"))

    def list_runs(self, *, cluster: str | None = None, limit: int = 100) -> list[RunRecord]:
        """Newest first."""
        index = cluster_runs_key(cluster) if cluster else RUNS_INDEX
        ids = [text(i) for i in self._r.zrevrange(index, 0, limit - 1)]
        with self._r.pipeline(transaction=False) as pipe:
            for run_id in ids:
                pipe.hgetall(run_key(run_id))
            hashes = pipe.execute()
        return [RunRecord.from_hash({text(k): text(v) for k, v in h.items()}) for h in hashes if h]

    def finish_run(self, run_id: str, *, status: str, error: str = "") -> None:
        if status not in RUN_FINAL:
            raise ValueError(f"a run finishes as one of {RUN_FINAL}, not {status!r}")
        error = redact(error)[:ERROR_MAX_CHARS]  # shown by status and Flower: no secret in it
        ended: dict[FieldT, EncodableT] = {"status": status, "finished": iso(self._clock())}
        if error:
            ended["error"] = error
        self._update_run(run_id, ended, () if error else ("error",), status, error)
        self.expire_secrets(run_id)

    def reopen_run(self, run_id: str) -> None:
        """Resume: the run is running again; phase records keep their history and final states."""
        self._update_run(run_id, {"status": "running"}, ("finished", "error"), "resumed", "")
        self.keep_secrets(run_id)

    def _update_run(
        self, run_id: str, fields: dict[FieldT, EncodableT], drop: Sequence[str], event: str, message: str
    ) -> None:
        key = run_key(run_id)
        with self._r.pipeline() as pipe:
            # WATCH + EXISTS: an update of an unknown (or concurrently deleted) run must not create a
            # half-filled hash; a concurrent change of the run just retries.
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    if not pipe.exists(key):
                        raise KeyError(f"no such run: {run_id}")
                    pipe.multi()
                    pipe.hset(key, mapping=fields)
                    if drop:
                        pipe.hdel(key, *drop)
                    self._run_event(pipe, key, event, message)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def _run_event(self, pipe: Any, key: str, event: str, message: str) -> None:
        entry = {"ts": iso(self._clock()), "node": "", "phase": "", "event": event, "attempt": 0, "message": message}
        pipe.xadd(f"{key}:events", entry, maxlen=EVENTS_MAXLEN, approximate=True)

    # --- phases -------------------------------------------------------------------------------
    def mark_phase_started(self, run_id: str, node: str, path: str, *, worker: str) -> int | None:
        """Returns this attempt's number, or None if the phase already succeeded/was skipped."""
        return self._move(run_id, node, path, "started", worker=worker)

    def mark_phase_succeeded(self, run_id: str, node: str, path: str) -> int | None:
        return self._move(run_id, node, path, "succeeded")

    def mark_phase_skipped(self, run_id: str, node: str, path: str, *, reason: str = "") -> int | None:
        return self._move(run_id, node, path, "skipped", message=reason)

    def mark_phase_retrying(self, run_id: str, node: str, path: str, *, error: str, delay: float) -> int | None:
        due = iso(self._clock() + timedelta(seconds=delay))
        return self._move(run_id, node, path, "retry", message=error, delayed=due)

    def mark_phase_failed(self, run_id: str, node: str, path: str, *, error: str) -> int | None:
        return self._move(run_id, node, path, "failed", message=error)

    def _move(
        self, run_id: str, node: str, path: str, event: str, *, worker: str = "", message: str = "", delayed: str = ""
    ) -> int | None:
        if "|" in node or "|" in path:
            raise ValueError(f"'|' is not allowed in node or phase names: {node!r} {path!r}")
        key = run_key(run_id)
        now = iso(self._clock())
        message = redact(message)[:ERROR_MAX_CHARS]  # last_error and the event: no secret in them
        args: list[EncodableT] = [node, path, event, now, worker, message, delayed, EVENTS_MAXLEN]
        attempts = int(self._transition(keys=[key, f"{key}:phases", f"{key}:events"], args=args))
        return None if attempts < 0 else attempts

    def phase_records(self, run_id: str) -> list[PhaseRecord]:
        """Every record of the run, in plan order; records outside the plan follow, sorted."""
        key = run_key(run_id)
        raw = {text(k): text(v) for k, v in self._r.hgetall(f"{key}:phases").items()}
        grouped: dict[tuple[str, str], dict[str, str]] = {}
        for name, value in raw.items():
            node, path, field = name.split("|", 2)
            grouped.setdefault((node, path), {})[field] = value
        plan_json = self._r.hget(key, "plan")
        plan = [(n, p) for n, p in json.loads(text(plan_json))] if plan_json else []
        order = [k for k in plan if k in grouped] + sorted(set(grouped) - set(plan))
        return [PhaseRecord.from_fields(node, path, grouped[(node, path)]) for node, path in order]

    def events(self, run_id: str, since_id: str = "0", *, block_ms: int | None = None) -> list[Event]:
        """Events after ``since_id`` (exclusive), oldest first; ``block_ms`` waits for new ones."""
        stream = f"{run_key(run_id)}:events"
        if block_ms is None:
            entries = self._r.xrange(stream, min=f"({since_id}" if since_id != "0" else "-") or []
        else:
            found: Any = self._r.xread({stream: since_id}, block=block_ms) or []  # per-version reply types
            entries = [e for _, batch in found for e in batch]
        return [Event.from_entry(entry_id, fields) for entry_id, fields in entries]

    # --- secrets ------------------------------------------------------------------------------
    def secret_redis_key(self, run_id: str, name: str) -> str:
        return f"{run_key(run_id)}:secret:{check_name('secret name', name)}"

    def put_secret(self, run_id: str, name: str, value: bytes | str, *, ttl: float | None = None) -> None:
        key = self.secret_redis_key(run_id, name)
        data = value.encode() if isinstance(value, str) else value
        with self._r.pipeline() as pipe:
            pipe.set(key, self._box.encrypt(data, aad=key), px=None if ttl is None else int(ttl * 1000))
            pipe.sadd(f"{run_key(run_id)}:secrets", name)
            pipe.execute()

    def expire_secrets(self, run_id: str) -> None:
        """Every secret of the run (and their index) expires ``secret_ttl`` seconds from now."""
        ms = max(1, int(self._secret_ttl * 1000))
        self._each_secret_key(run_id, lambda pipe, key: pipe.pexpire(key, ms))

    def keep_secrets(self, run_id: str) -> None:
        """A resumed run needs its secrets again: they no longer expire."""
        self._each_secret_key(run_id, lambda pipe, key: pipe.persist(key))

    def _each_secret_key(self, run_id: str, command: Callable[[Any, str], Any]) -> None:
        index = f"{run_key(run_id)}:secrets"
        names = [text(n) for n in self._r.smembers(index)]
        with self._r.pipeline() as pipe:
            for key in [index, *(self.secret_redis_key(run_id, n) for n in names)]:
                command(pipe, key)
            pipe.execute()

    def get_secret(self, run_id: str, name: str) -> bytes | None:
        key = self.secret_redis_key(run_id, name)
        sealed = self._r.get(key)
        return None if sealed is None else self._box.decrypt(sealed, aad=key)


def _field_prefix(node: str, path: str) -> str:
    return f"{node}|{path}|"
