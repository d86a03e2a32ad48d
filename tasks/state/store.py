"""Run state in Redis: runs, per-(run, node, phase) records, an event stream per run, sealed secrets.

Reads and writes only Redis keys under ``kubeboot:``. Every write that touches more than one key or
field is atomic: each transition of a phase or a run is ONE Lua script (``tasks.state.scripts``,
called through ``tasks.state.transitions``) that checks and writes together: the run still going, the
run's cluster lock still its own (fencing), the phase's lease still the caller's, the phase record,
the run record, the lock and the event. Run creation is a MULTI/EXEC pipeline. Timestamps are UTC ISO
8601 with milliseconds and ``Z``; lease deadlines are Redis server time in epoch milliseconds.

| key                                   | type   | field / entry     | meaning                                         |
|---------------------------------------|--------|-------------------|-------------------------------------------------|
| ``kubeboot:runs``                     | zset   | member run id     | every run; score = created, epoch seconds       |
| ``kubeboot:runs:active``              | set    | member run id     | runs pending or running                         |
| ``kubeboot:leases``                   | zset   | ``<run>|<node>|   | deadline (epoch ms, Redis time) by which the    |
|                                       |        | <path>|``         | phase must have moved on: its running copy's    |
|                                       |        |                   | lease, a retry's due time + lease, a success's  |
|                                       |        |                   | grace for its successor to start; workers sweep |
|                                       |        |                   | what is overdue (``workflows.liveness``); the   |
|                                       |        |                   | successor's start and the run's end remove it   |
| ``kubeboot:cluster:<name>:runs``      | zset   | member run id     | the runs of one cluster; same score             |
| ``kubeboot:run:<id>``                 | hash   | id                | the run id (``r-`` + 8 hex unless given)        |
|                                       |        | kind              | ``init`` / ``join`` (``keys.RUN_KINDS``)        |
|                                       |        | cluster           | cluster name                                    |
|                                       |        | spec_digest       | sha256 hex of the normalised config (below)     |
|                                       |        | status            | pending → running → succeeded / failed;         |
|                                       |        |                   | failed → running again on resume                |
|                                       |        | created           | when submitted                                  |
|                                       |        | started           | when the first phase started (absent before)    |
|                                       |        | finished          | when the run ended (absent while not ended)     |
|                                       |        | error             | one-line summary of why it failed (if it did)   |
|                                       |        | nodes             | JSON list of node names, in plan order          |
|                                       |        | plan              | JSON list of ``[node, phase path]``, run order  |
|                                       |        | config            | the config documents, ENCRYPTED (see below)     |
|                                       |        | lock              | key of the cluster lock the run holds while it  |
|                                       |        |                   | runs (``tasks.state.lock``); absent: none       |
|                                       |        | fence             | the fencing token of the run's holding of that  |
|                                       |        |                   | lock; every transition checks the lock still    |
|                                       |        |                   | carries it, so a run whose lock was taken over  |
|                                       |        |                   | writes nothing more (and ends ``failed``)       |
| ``kubeboot:run:<id>:phases``          | hash   | ``<node>|<path>|status``   | pending / running / retrying /         |
|                                       |        |                   | succeeded / failed / skipped                    |
|                                       |        | ``…|attempts``    | times the phase was started, counted here       |
|                                       |        | ``…|tries``       | starts since the run was last (re)opened: the   |
|                                       |        |                   | attempt ceiling counts these (a resumed run     |
|                                       |        |                   | gives its failed phase a new budget)            |
|                                       |        | ``…|worker``      | hostname of the worker of the last attempt      |
|                                       |        | ``…|started``     | start of the last attempt                       |
|                                       |        | ``…|finished``    | end of the phase (absent while not ended)       |
|                                       |        | ``…|delayed``     | when the next attempt is due (while retrying)   |
|                                       |        | ``…|last_error``  | message of the last failure or retry            |
|                                       |        | ``…|owner``       | lease: id of the task copy that runs the phase  |
|                                       |        |                   | (``<worker>/<random>``), or that completed it   |
|                                       |        |                   | and is sending its successor                    |
|                                       |        | ``…|lease``       | lease deadline, epoch ms (Redis ``TIME``);      |
|                                       |        |                   | renewed while the action runs, kept a short     |
|                                       |        |                   | grace after success; a copy that finds another  |
|                                       |        |                   | copy's unexpired lease waits, an expired one is |
|                                       |        |                   | taken over (its holder died). While retrying    |
|                                       |        |                   | (no owner): when the retry is due + the lease   |
|                                       |        | ``…|pred``        | the lease-index member of the phase that sent   |
|                                       |        |                   | this one (set when it succeeded, cleared when   |
|                                       |        |                   | this one starts: that entry has served)         |
| ``kubeboot:run:<id>:events``          | stream | ts, node, phase,  | one entry per transition, capped ~10000;        |
|                                       |        | event, attempt,   | event: started / succeeded / retry / failed /   |
|                                       |        | message           | skipped; run-level entries have empty node and  |
|                                       |        |                   | phase: submitted / resumed / succeeded / failed |
| ``kubeboot:run:<id>:secret:<name>``   | string | –                 | sealed secret (``tasks.state.secrets``)         |
| ``kubeboot:queue:<q>:consumer``,      | string | –                 | workers' beats: ``tasks.state.presence``        |
| ``kubeboot:worker:<host>:alive``      |        |                   |                                                 |
| (parents, indexes)                    |        |                   | a parent run's steps and extra fields, the      |
|                                       |        |                   | batch slots: ``tasks.state.parents``; indexes   |
|                                       |        |                   | by kind, status, batch and pruning:             |
|                                       |        |                   | ``tasks.state.index``                           |
| ``kubeboot:run:<id>:secrets``         | set    | member name       | the names of the run's secrets (to expire them) |

A run's secrets expire: when the run finishes (succeeded or failed) every ``secret:<name>`` key and the
``secrets`` set get an EXPIRE of ``secret_ttl`` seconds (``KUBEBOOT_SECRET_TTL``, default 24 h); a
resumed run makes them persistent again. The run's record, phases and events stay.

Choices, and why:
- One phases hash per run with ``<node>|<path>|<field>`` names rather than one hash per phase: a whole
  run's status is one HGETALL, and a transition stays inside a few keys of one run for the script.
  ``|`` cannot occur in node names (DNS names) or phase paths.
- ``attempts`` is counted by the store, not taken from Celery's retry counter: a task redelivered after
  its worker died keeps ``retries`` unchanged but is a new attempt, and a phase that kills its worker
  every time must still run out of attempts.
- Exactly once under at-least-once delivery: a phase's action runs only under its lease, so two
  copies never run it side by side; a phase recorded ``succeeded`` or ``skipped`` is final. A copy that
  finds its phase succeeded looks at the phase's successor: delivered (its record left ``pending``)
  means nothing is left to do; not delivered, once the completer's grace lease has expired, means the
  completer died before sending it, and this copy sends it. The successor dedupes the rare double send
  the same way, and the finish script ends a run once.
- ``duration`` is not stored; it is ``finished - started`` of the last attempt, derived on read.
- The config is stored encrypted whole rather than with tokens stripped: kubeadm documents carry
  bootstrap tokens, certificate keys and discovery tokens in several places, and encrypting everything
  cannot miss one. ``spec_digest`` is SHA-256 over canonical JSON (sorted keys, no spaces); the tokens
  inside have ~80 bits of entropy, so the digest does not reveal them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from kubeboot.config.settings import DEFAULT_SECRET_TTL
from kubeboot.tasks.state import index, parents
from kubeboot.tasks.state.keys import (
    ACTIVE_RUNS,
    NO_LOCK,
    PREFIX,
    RUN_KINDS,
    RUNS_INDEX,
    check_name,
    cluster_runs_key,
    run_key,
)
from kubeboot.tasks.state.records import Event, PhaseRecord, RunRecord, iso, text
from kubeboot.tasks.state.secrets import SecretBox
from kubeboot.tasks.state.transitions import EVENTS_MAXLEN, NoSuchRunError, Transitions, field_prefix

__all__ = ["PREFIX", "RUN_FINAL", "NoSuchRunError", "RunExistsError", "RunStore", "check_name", "new_run_id",
           "run_key", "spec_digest"]

RUN_FINAL = ("succeeded", "failed")
DEFAULT_LOCK_TTL = 900.0  # Settings.lock_ttl's default


class RunExistsError(Exception):
    """A run with this id already exists."""


def spec_digest(config: Any) -> str:
    """SHA-256 of the config documents as canonical JSON: equal specs, equal digests."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_run_id() -> str:
    return "r-" + secrets.token_hex(4)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RunStore(Transitions):
    """The one reader and writer of run state. ``clock`` is injectable so tests freeze time.

    ``lock_ttl`` (``KUBEBOOT_LOCK_TTL``): the lease every phase start renews on the run's cluster lock.
    Phase and run transitions: ``tasks.state.transitions``.
    """

    def __init__(self, client: redis.Redis, box: SecretBox, *, clock: Callable[[], datetime] = _utc_now,
                 secret_ttl: float = DEFAULT_SECRET_TTL, lock_ttl: float = DEFAULT_LOCK_TTL) -> None:
        self._r = client
        self._box = box
        self._clock = clock
        self._secret_ttl = secret_ttl
        self._lock_ttl = lock_ttl
        self._lock_keys: dict[str, str] = {}
        self._register_scripts()

    @property
    def client(self) -> redis.Redis:
        """The store's Redis client (for the run state's other readers: ``tasks.state.parents``)."""
        return self._r

    # --- runs ---------------------------------------------------------------------------------
    def create_run(
        self, *, kind: str, cluster: str, config: Any, plan: Sequence[tuple[str, str]], run_id: str | None = None,
        lock: tuple[str, int] | None = None, extra: Mapping[str, str] | None = None,
    ) -> RunRecord:
        """Record a new ``pending`` run. ``lock``: the (key, fencing token) of the cluster lock the
        submitter took for it, which the run then holds (renewed and checked by every transition).
        ``extra``: the fields of a parent's child, a batch member or a routed run (``tasks.state.parents``)."""
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
        if lock is not None:
            fields.update(lock=lock[0], fence=lock[1])
        fields.update(extra or {})
        seed: dict[FieldT, EncodableT] = {f"{field_prefix(n, p)}status": "pending" for n, p in plan}
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
                pipe.sadd(ACTIVE_RUNS, run_id)
                index.on_create(pipe, run_id, kind, (extra or {}).get("batch"), created.timestamp())
                self._run_event(pipe, key, "submitted", f"{kind} of cluster {cluster}")
                pipe.execute()
            except redis.WatchError:
                raise RunExistsError(f"run {run_id} already exists") from None
        self._lock_keys[run_id] = lock[0] if lock is not None else NO_LOCK  # the transitions' keys, known
        return RunRecord.from_hash({str(k): text(v) for k, v in fields.items()})  # what was just written

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

    def active_runs(self) -> list[str]:
        """Runs pending or running."""
        return sorted(text(r) for r in self._r.smembers(ACTIVE_RUNS))

    def _run_ended(self, run_id: str) -> None:
        self.expire_secrets(run_id)
        index.on_end(self._r, run_id)
        parents.run_ended(self, run_id)

    def _run_reopened(self, run_id: str) -> None:
        self.keep_secrets(run_id)
        index.on_reopen(self._r, run_id)

    def _run_event(self, pipe: Any, key: str, event: str, message: str) -> None:
        entry = {"ts": iso(self._clock()), "node": "", "phase": "", "event": event, "attempt": 0, "message": message}
        pipe.xadd(f"{key}:events", entry, maxlen=EVENTS_MAXLEN, approximate=True)

    # --- phases -------------------------------------------------------------------------------
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
