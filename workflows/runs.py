"""Run lifecycle: submit an init, resume a run, say what a run waits for. Builds the Celery canvas.

The canvas is a chain of immutable signatures ``task.si(run_id, node, auth=TOKEN)`` routed by
``workflows.routing``, ending with ``kubeboot.run.finish``; each link carries the token the control side
signs for it (``tasks.trust.tokens``: task, run, node, queue, cluster, config digest, expiry), which the
worker that receives it verifies. Only the control side can build a chain. The plan (every (node, phase) of the
run, in order) is stored with the run; phases dropped at planning time (``--skip-phases``, a false
condition) are recorded ``skipped`` so ``status`` shows them and ``resume`` never runs them.

Nothing is left half-done: a submit that fails after taking the cluster lock releases it (before the
run is recorded) or ends the run ``failed`` saying why (after), which releases it too. ``resume`` is
one atomic claim in the run state, so of concurrent resumes of a run exactly one sends a chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubeboot.workflows.local import plan_init
from kubeboot.workflows.routing import routed_queue
from kubeboot.workflows.selection import Step

if TYPE_CHECKING:
    import redis
    from celery import Celery

    from kubeboot.config.resolved import InitConfig
    from kubeboot.config.settings import Settings
    from kubeboot.tasks.state import PhaseRecord, RunRecord, RunStore

FINISH_TASK = "kubeboot.run.finish"
DONE = ("succeeded", "skipped")


class RunRefusedError(Exception):
    """The run cannot start or resume now; the message says why and what to do."""


@dataclass(frozen=True)
class Submitted:
    run: RunRecord
    queues: list[str]
    canvas: Any = None  # the chain, when the caller sends it (``RunOptions.send`` False)


@dataclass(frozen=True)
class RunOptions:
    """How a run is recorded and sent. ``run_id``: a given id (a parent's child); ``extra``: the child's
    ``parent`` and ``batch`` fields; ``route``: where its tasks go (``routing.run_route``); ``send``
    False leaves sending ``Submitted.canvas`` to the caller (a group of children sent at once)."""

    run_id: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    route: Mapping[str, Any] = field(default_factory=dict)
    send: bool = True

    def fields(self) -> dict[str, str]:
        import json

        return {**self.extra, **({"route": json.dumps(dict(self.route))} if self.route else {})}


def config_documents(cfg: InitConfig) -> list[dict[str, Any]]:
    """The resolved config as kubeadm documents (node name and address filled in)."""
    from kubeboot.config.models import dump

    docs: list[dict[str, Any]] = [dump(cfg.init), dump(cfg.cluster)]
    if cfg.kubelet:
        docs.append(cfg.kubelet)
    if cfg.kubeproxy:
        docs.append(cfg.kubeproxy)
    return docs


def chain_of(app: Celery, run: RunRecord, steps: list[tuple[str, Step]], store: RunStore) -> Any:
    """The chain that runs ``steps`` (node, step) of ``run`` in order, then finishes the run, each link
    signed. Queues follow the run's ``route`` (``routing.run_route``); without one a node's worker id is
    its node name."""
    from celery import chain

    sign = store.signer(run)

    def link(task: str, node: str, target: str) -> Any:
        queue = routed_queue(run.route, target, node)
        args = (run.id, node) if node else (run.id,)
        return app.signature(task, args=args, kwargs={"auth": sign(task, node, queue)}, immutable=True, queue=queue)

    sigs = [link(step.placed.task_name, node, step.placed.phase.target) for node, step in steps]
    sigs.append(link(FINISH_TASK, "", "control"))
    return chain(*sigs)


def finish_signature(app: Celery, run: RunRecord, store: RunStore) -> Any:
    """The run's finish task alone, signed (a run whose every phase is done but that never finished)."""
    return chain_of(app, run, [], store).tasks[0]


def node_readers(store: RunStore, route: Mapping[str, Any], nodes: list[str], *, dry_run: bool) -> list[str]:
    """The node workers that run a run's node phases, each sent its own sealed copy of the config (a dry
    run's node phases run on the control worker: none). Each must have its key pinned on the control side."""
    from kubeboot.workflows.routing import NODE_QUEUE_PREFIX

    if dry_run:
        return []
    workers = [routed_queue(route, "node", n).removeprefix(NODE_QUEUE_PREFIX) for n in nodes]
    pins = store.keys.pins
    for worker in workers:
        if pins is None or pins.get(worker) is None:
            where = f" in {pins.dir}" if pins else ""
            raise RunRefusedError(f"node worker {worker} has no public key pinned on the control side{where}: on "
                                  f"its machine run `kubeboot deploy node-key --id {worker}`, then here "
                                  "`kubeboot deploy register-node` with the line it printed")
    return workers


def declare(app: Celery, queues: list[str]) -> None:
    from kombu import Queue

    for name in queues:
        if name not in app.amqp.queues:
            app.amqp.queues.add(Queue(name, routing_key=name))


def submit_init(app: Celery, client: redis.Redis, store: RunStore, settings: Settings, cfg: InitConfig,
                *, skip: list[str] | None = None, upload_certs: bool = False, target: str = "all",
                options: RunOptions | None = None) -> Submitted:
    """Record a new init run of ``cfg``'s first control-plane node and send its chain. A dry run
    (``dryRun: true``) takes no cluster lock: it changes nothing a real init could collide with."""
    from kubeboot.tasks.state import InitLock, LockHeldError
    from kubeboot.tasks.state.store import RunExistsError, new_run_id

    node = cfg.node_name
    opts = dry_run_options(options or RunOptions(), cfg.init.dryRun, node)
    # Parents without an action only group their children: they are no step of their own.
    planned = plan_init(cfg, target, skip, upload_certs=upload_certs)
    steps = [(node, s) for s in planned if s.placed.phase.action or s.skip_reason]
    cluster = cfg.cluster.clusterName
    run_id = opts.run_id or new_run_id()
    lock = InitLock(client, cluster, settings.lock_ttl)
    token: int | None = None
    if not cfg.init.dryRun:
        lock.release_if_owner_finished(store)
        try:
            token = lock.acquire(run_id)
        except LockHeldError as e:
            raise RunRefusedError(f"{e}; watch it with `kubeboot status {e.holder.owner} --watch`, "
                                  f"or resume it with `kubeboot resume {e.holder.owner}` if it failed") from None
    plan = [(n, s.path) for n, s in steps]
    try:
        run = store.create_run(kind="init", cluster=cluster, config=config_documents(cfg), plan=plan, run_id=run_id,
                               lock=None if token is None else (lock.key, token), extra=opts.fields(),
                               readers=node_readers(store, opts.route, [node], dry_run=bool(cfg.init.dryRun)))
    except RunExistsError:
        raise  # the run of this id holds the (re-entrant) lock: it is not ours to release
    except BaseException:
        if token is not None:
            lock.release(run_id, token=token)  # nothing recorded: nothing may hold the cluster
        raise
    return _send(app, store, run, steps, opts, extra_queue=routed_queue(opts.route, "node", node))


def dry_run_options(opts: RunOptions, dry_run: bool, node: str) -> RunOptions:
    """A dry run's tasks all go to the dry-run queue (its route says so), whoever submits it."""
    if not dry_run or opts.route.get("dryRun"):
        return opts
    from dataclasses import replace

    from kubeboot.workflows.routing import run_route

    return replace(opts, route=run_route({node: node}, dry_run=True))


def _send(app: Celery, store: RunStore, run: RunRecord, steps: list[tuple[str, Step]], opts: RunOptions, *,
          extra_queue: str) -> Submitted:
    """Record the planned skips of a new run and send (or hand back) its chain."""
    queues = [routed_queue(opts.route, s.placed.phase.target, n) for n, s in steps] + [extra_queue]
    with _ends_run_on_error(store, run.id, "submit"):
        store.mark_phases_skipped(run.id, [(n, s.path, s.skip_reason) for n, s in steps if s.skip_reason])
        declare(app, queues)
        canvas = chain_of(app, run, [(n, s) for n, s in steps if s.runs_action], store)
        if opts.send:
            canvas.apply_async()
    return Submitted(run, sorted(set(queues)), canvas)


def resume(app: Celery, client: redis.Redis, store: RunStore, settings: Settings, run_id: str) -> RunRecord:
    """Send again every phase of ``run_id`` that has not succeeded (nor been skipped)."""
    from kubeboot.tasks.state import InitLock, LockHolder

    run = store.get_run(run_id)
    if run is None:
        raise RunRefusedError(f"no run {run_id}; list runs with `kubeboot runs`")
    if run.status == "succeeded":
        return run
    todo = remaining_steps(store, run)
    lock = InitLock(client, run.cluster, settings.lock_ttl)
    if run.kind == "init":
        lock.release_if_owner_finished(store)  # a finished run's lock, left by a worker that died, is recovered
    verdict = store.reopen_run(run_id)  # the one atomic claim: a concurrent resume gets "refused"
    if verdict.action == "refused":
        raise RunRefusedError(f"run {run_id} is {verdict.detail}; follow it with `kubeboot status {run_id} --watch`")
    if verdict.action == "held":
        raise RunRefusedError(f"cannot resume run {run_id}: {lock.describe(LockHolder.from_json(verdict.detail))}")
    with _ends_run_on_error(store, run_id, "resume"):
        declare(app, [routed_queue(run.route, s.placed.phase.target, n) for n, s in todo])
        chain_of(app, run, todo, store).apply_async()
    refreshed = store.get_run(run_id)
    assert refreshed is not None
    return refreshed


def remaining_steps(store: RunStore, run: RunRecord, records: list[PhaseRecord] | None = None
                    ) -> list[tuple[str, Step]]:
    """The planned steps of ``run`` not yet succeeded nor skipped, in plan order, with an action."""
    done = {(r.node, r.path) for r in records or store.phase_records(run.id) if r.status in DONE}
    if run.kind == "join":
        from kubeboot.workflows.join_runs import join_steps_by_path

        by_path = join_steps_by_path(store, run)
    else:
        by_path = {s.path: s for s in plan_init(_config(store, run.id), "all")}
    return [(n, by_path[p]) for n, p in run.plan
            if (n, p) not in done and p in by_path and by_path[p].placed.phase.action]


def _config(store: RunStore, run_id: str) -> InitConfig:
    from kubeboot.config.loader import build_init_config

    return build_init_config(store.run_config(run_id), f"run {run_id}", fill_node_defaults=False)


class _ends_run_on_error:
    """Anything raised while a run is being sent ends it ``failed`` with the reason (which releases its
    lock): a run nobody sent must not stay ``pending``/``running`` and hold its cluster forever."""

    def __init__(self, store: RunStore, run_id: str, what: str) -> None:
        self._store, self._run_id, self._what = store, run_id, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: Any) -> None:
        if err is None:
            return
        reason = " ".join(str(err).split()) or type(err).__name__
        message = f"{self._what} failed before the run was sent to the workers: {type(err).__name__}: {reason}"
        try:
            self._store.finish_run(self._run_id, status="failed", error=message)
        except Exception as again:  # the run state is unreachable too: the lock lapses with its TTL
            err.add_note(f"and the run could not be recorded failed: {again}")
        if isinstance(err, Exception) and not isinstance(err, RunRefusedError):
            raise RunRefusedError(f"run {self._run_id}: {message}") from err
