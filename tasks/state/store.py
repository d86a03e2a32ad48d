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
|                                       |        | config            | the config documents, SEALED for the control    |
|                                       |        |                   | side with the cluster's key (``tasks.trust``)   |
|                                       |        | ``config:to:<w>`` | the same, sealed to node worker ``<w>``'s key:  |
|                                       |        |                   | one per node worker that runs the run's phases  |
|                                       |        | auth              | Ed25519 signature of the control side over the  |
|                                       |        |                   | fields that steer the run (``tasks.trust.       |
|                                       |        |                   | tokens.META_FIELDS``), verified before use      |
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
| ``kubeboot:run:<id>:secret:<name>``   | string | –                 | a run value for the control side: sealed with   |
|                                       |        |                   | the cluster's key (control wrote it) or to the  |
|                                       |        |                   | control side's key (a node wrote it)            |
| ``…:secret:<name>:to:<w>``            | string | –                 | a value node worker ``<w>`` wrote, sealed to    |
|                                       |        |                   | its own key (what its later phases read back)   |
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
- A whole cluster is a parent run (``kind: cluster``) owning one child run per node (``init`` / ``join``,
  ids ``<cluster run>.<node>``), a batch a parent owning cluster runs (``<batch>.<cluster>``), rather
  than one run with phases for every node: each node keeps its own chain, leases, retries, locks and
  ``resume`` from its failed phase; the parent's steps say which node is where (``status`` shows one row
  per node or cluster); and, every task carrying its run id as first argument, a search of Flower for a
  cluster's or batch's id finds every task under it, since a child's id extends its parent's
  (``tasks.state.parents``).
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
- Who reads what (``tasks.trust``): the control side (submitter, control worker) holds the master key
  and opens everything of the runs; a node worker opens only what was sealed to its own key: its runs'
  configs and what it wrote itself. What a node writes is sealed to itself and to the control side, and
  the control side takes a node's values only for runs that node serves. Values are bound to run,
  cluster, node and field (associated data), so none opens anywhere else.
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

from kubeboot.config.settings import DEFAULT_SECRET_TTL, DEFAULT_TASK_TTL
from kubeboot.tasks.state import index, parents
from kubeboot.tasks.state.clusterkeys import ClusterKeys
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
from kubeboot.tasks.state.secrets import SecretBox, SecretError
from kubeboot.tasks.state.transitions import EVENTS_MAXLEN, NoSuchRunError, Transitions, field_prefix
from kubeboot.tasks.trust import seal, tokens
from kubeboot.tasks.trust.keyring import Keyring, control_keyring

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

    def __init__(self, client: redis.Redis, keys: Keyring | SecretBox, *, clock: Callable[[], datetime] = _utc_now,
                 secret_ttl: float = DEFAULT_SECRET_TTL, lock_ttl: float = DEFAULT_LOCK_TTL,
                 task_ttl: float = DEFAULT_TASK_TTL) -> None:
        self._r = client
        self._task_ttl = task_ttl
        # A bare SecretBox: the control side with that master key (tests, tools reading the state).
        self._keys = keys if isinstance(keys, Keyring) else control_keyring(keys.master_key)
        self._cluster_keys = ClusterKeys(client, self._keys.control.wrap) if self._keys.control else None
        self._meta: dict[str, dict[str, str]] = {}
        self._clock = clock
        self._secret_ttl = secret_ttl
        self._lock_ttl = lock_ttl
        self._lock_keys: dict[str, str] = {}
        self._register_scripts()

    @property
    def keys(self) -> Keyring:
        return self._keys

    @property
    def client(self) -> redis.Redis:
        """The store's Redis client (for the run state's other readers: ``tasks.state.parents``)."""
        return self._r

    # --- runs ---------------------------------------------------------------------------------
    def create_run(
        self, *, kind: str, cluster: str, config: Any, plan: Sequence[tuple[str, str]], run_id: str | None = None,
        lock: tuple[str, int] | None = None, extra: Mapping[str, str] | None = None, readers: Sequence[str] = (),
    ) -> RunRecord:
        """Record a new ``pending`` run. ``lock``: the (key, fencing token) of the cluster lock the
        submitter took for it, which the run then holds (renewed and checked by every transition).
        ``extra``: the fields of a parent's child, a batch member or a routed run (``tasks.state.parents``).
        ``readers``: the node workers that run its node phases, each sent its own sealed copy of the config."""
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
        }
        if lock is not None:
            fields.update(lock=lock[0], fence=lock[1])
        fields.update(extra or {})
        fields.update(self._sealed_config(run_id, cluster, json.dumps(config).encode(), readers))
        signed = {str(k): v for k, v in fields.items()}
        fields[tokens.META_SIGNATURE] = tokens.sign_meta(signed, self._control().signing)
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
        """The run's record, its metadata verified (``tokens.Refused`` when it was edited in Redis)."""
        raw = self._r.hgetall(run_key(run_id))
        if not raw:
            return None
        fields = {text(k): text(v) for k, v in raw.items()}
        self._verify(run_id, fields)
        return RunRecord.from_hash(fields)

    def meta(self, run_id: str) -> dict[str, str]:
        """The run's signed fields (``tokens.META_FIELDS``), verified once per process: they never change."""
        if run_id not in self._meta:
            raw = self._r.hmget(run_key(run_id), [*tokens.META_FIELDS, tokens.META_SIGNATURE])
            if raw[0] is None:
                raise NoSuchRunError(f"no such run: {run_id}")
            fields = {k: text(v) for k, v in zip((*tokens.META_FIELDS, tokens.META_SIGNATURE), raw, strict=True)
                      if v is not None}
            self._verify(run_id, fields)
        return self._meta[run_id]

    def _verify(self, run_id: str, fields: Mapping[str, str]) -> None:
        key = self._keys.verify_key
        signed = {k: fields[k] for k in tokens.META_FIELDS if k in fields}
        known = self._meta.get(run_id)
        if known == signed:
            return
        if key is not None:
            tokens.verify_meta(fields, key, run_id)
        if len(self._meta) > 1024:
            self._meta.clear()
        self._meta[run_id] = signed

    def _lock_key(self, run_id: str) -> str:
        """The run's lock key, from its verified metadata (a lock dropped in Redis is no lock dropped)."""
        cached = self._lock_keys.get(run_id)
        if cached is None:
            cached = self.meta(run_id).get("lock") or NO_LOCK
            self._lock_keys[run_id] = cached
        return cached

    def signer(self, run: RunRecord) -> tokens.Signer:
        """Signs the tokens of one chain of ``run``, now by Redis's clock, valid ``task_ttl`` seconds."""
        seconds, micros = self._r.time()
        return tokens.Signer(self._control().signing, run=run.id, cluster=run.cluster, digest=run.spec_digest,
                             iat=int(seconds) + int(micros) / 1e6, ttl=self._task_ttl)

    def _control(self) -> Any:
        if self._keys.control is None:
            raise PermissionError("only the control side (which holds the master key) creates and signs runs")
        return self._keys.control

    def _sealed_config(self, run_id: str, cluster: str, plain: bytes, readers: Sequence[str]) -> dict[str, str]:
        bound = seal.aad(run=run_id, cluster=cluster, node="", field="config", to=seal.CONTROL)
        out = {"config": seal.seal_with_key(self._cluster_key(cluster), plain, bound)}
        for worker in dict.fromkeys(readers):
            public = self._keys.pins.get(worker) if self._keys.pins else None
            if public is None:
                raise KeyError(f"node worker {worker} has no pinned key on the control side "
                               f"(`kubeboot deploy register-node`)")
            bound = seal.aad(run=run_id, cluster=cluster, node=worker, field="config", to=worker)
            out[f"config:to:{worker}"] = seal.seal_to(public, plain, bound)
        return out

    def run_status(self, run_id: str) -> str | None:
        value = self._r.hget(run_key(run_id), "status")
        return None if value is None else text(value)

    def run_config(self, run_id: str) -> Any:
        """The run's config documents: the control side's copy, or this node worker's own."""
        key, worker = run_key(run_id), self._keys.worker
        cluster = self._bound_cluster(run_id, f"{key}#config")
        field = f"config:to:{worker}" if worker else "config"
        sealed = self._r.hget(key, field)
        if sealed is None:
            raise KeyError(f"run {run_id} holds no config sealed for {worker or 'the control side'}")
        where = f"{key}#{field}"
        if worker:
            assert self._keys.node is not None
            bound = seal.aad(run=run_id, cluster=cluster, node=worker, field="config", to=worker)
            return json.loads(seal.open_box(self._keys.node.private, text(sealed), bound, where))
        bound = seal.aad(run=run_id, cluster=cluster, node="", field="config", to=seal.CONTROL)
        return json.loads(seal.open_with_key(self._cluster_key(cluster), text(sealed), bound, where))

    def _bound_cluster(self, run_id: str, where: str) -> str:
        """The cluster a value of ``run_id`` is bound to, from the run's verified metadata."""
        try:
            return self.meta(run_id).get("cluster", "")
        except NoSuchRunError:
            raise SecretError(f"{where}: there is no run {run_id} to bind the value to (copied from another "
                              "key?)") from None
        except tokens.Refused as e:
            raise SecretError(f"{where}: {e}") from None

    def _cluster_key(self, cluster: str) -> bytes:
        if self._cluster_keys is None:
            raise PermissionError("only the control side holds cluster keys")
        return self._cluster_keys.get(cluster)

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
        """Seal ``value`` for the control side (and, written by a node worker, for that node too)."""
        self.secret_redis_key(run_id, name)  # checks the name
        data = value.encode() if isinstance(value, str) else value
        cluster, worker = self.meta(run_id).get("cluster", ""), self._keys.worker
        copies: dict[str, str] = {}
        if worker:
            assert self._keys.node is not None and self._keys.control_public is not None
            to_control = seal.aad(run=run_id, cluster=cluster, node=worker, field=name, to=seal.CONTROL)
            copies[name] = seal.seal_to(self._keys.control_public.box, data, to_control, writer=worker)
            to_self = seal.aad(run=run_id, cluster=cluster, node=worker, field=name, to=worker)
            copies[f"{name}:to:{worker}"] = seal.seal_to(self._keys.node.public, data, to_self, writer=worker)
        else:
            bound = seal.aad(run=run_id, cluster=cluster, node="", field=name, to=seal.CONTROL)
            copies[name] = seal.seal_with_key(self._cluster_key(cluster), data, bound)
        px = None if ttl is None else int(ttl * 1000)
        with self._r.pipeline() as pipe:
            for member, sealed in copies.items():
                pipe.set(f"{run_key(run_id)}:secret:{member}", sealed, px=px)
                pipe.sadd(f"{run_key(run_id)}:secrets", member)
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
            for key in [index, *(f"{run_key(run_id)}:secret:{n}" for n in names)]:
                command(pipe, key)
            pipe.execute()

    def get_secret(self, run_id: str, name: str) -> bytes | None:
        """A node worker reads its own copy; the control side, what it sealed or what a node of the run sent."""
        key, worker = self.secret_redis_key(run_id, name), self._keys.worker
        raw = self._r.get(f"{key}:to:{worker}" if worker else key)
        if raw is None:
            return None
        cluster = self._bound_cluster(run_id, key)
        sealed = text(raw)
        if worker:
            assert self._keys.node is not None
            bound = seal.aad(run=run_id, cluster=cluster, node=worker, field=name, to=worker)
            return seal.open_box(self._keys.node.private, sealed, bound, key)
        writer = seal.writer_of(sealed)
        if not writer:
            bound = seal.aad(run=run_id, cluster=cluster, node="", field=name, to=seal.CONTROL)
            return seal.open_with_key(self._cluster_key(cluster), sealed, bound, key)
        if writer not in self.run_workers(run_id):
            raise SecretError(f"{key}: sealed by node worker {writer}, which does not serve run {run_id}")
        bound = seal.aad(run=run_id, cluster=cluster, node=writer, field=name, to=seal.CONTROL)
        return seal.open_box(self._control().box, sealed, bound, key)

    def run_workers(self, run_id: str) -> set[str]:
        """The node workers that serve the run (its route's node queues, by default its node names)."""
        meta = self.meta(run_id)
        nodes = json.loads(meta.get("nodes") or "[]")
        routed = (json.loads(meta.get("route") or "{}").get("nodes") or {})
        return {str(routed.get(n) or n).removeprefix("node.") for n in nodes}
