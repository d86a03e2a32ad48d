"""Run lifecycle: submit an init, resume a run, read its status. Builds the Celery canvas.

The canvas is a chain of immutable signatures ``task.si(run_id, node)`` routed by
``workflows.routing``, ending with ``kubeboot.run.finish``. The plan (every (node, phase) of the
run, in order) is stored with the run; phases dropped at planning time (``--skip-phases``, a false
condition) are recorded ``skipped`` so ``status`` shows them and ``resume`` never runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubeboot.workflows.local import plan_init
from kubeboot.workflows.routing import node_queue, queue_for
from kubeboot.workflows.selection import Step

if TYPE_CHECKING:
    import redis
    from celery import Celery

    from kubeboot.config.resolved import InitConfig
    from kubeboot.config.settings import Settings
    from kubeboot.tasks.state import RunRecord, RunStore

FINISH_TASK = "kubeboot.run.finish"


class RunRefusedError(Exception):
    """The run cannot start or resume now; the message says why and what to do."""


@dataclass(frozen=True)
class Submitted:
    run: RunRecord
    lock_token: int
    queues: list[str]


def config_documents(cfg: InitConfig) -> list[dict[str, Any]]:
    """The resolved config as kubeadm documents (node name and address filled in)."""
    from kubeboot.config.models import dump

    docs: list[dict[str, Any]] = [dump(cfg.init), dump(cfg.cluster)]
    if cfg.kubelet:
        docs.append(cfg.kubelet)
    if cfg.kubeproxy:
        docs.append(cfg.kubeproxy)
    return docs


def _chain(app: Celery, run_id: str, steps: list[tuple[str, Step]], worker_ids: dict[str, str]) -> Any:
    from celery import chain

    sigs = []
    for node, step in steps:
        queue = queue_for(step.placed.phase.target, worker_ids[node])
        sigs.append(app.signature(step.placed.task_name, args=(run_id, node), immutable=True, queue=queue))
    from kubeboot.workflows.routing import CONTROL_QUEUE

    sigs.append(app.signature(FINISH_TASK, args=(run_id,), immutable=True, queue=CONTROL_QUEUE))
    return chain(*sigs)


def _declare(app: Celery, queues: list[str]) -> None:
    from kombu import Queue

    for name in queues:
        if name not in app.amqp.queues:
            app.amqp.queues.add(Queue(name, routing_key=name))


def submit_init(app: Celery, client: redis.Redis, store: RunStore, settings: Settings, cfg: InitConfig,
                *, skip: list[str] | None = None, upload_certs: bool = False) -> Submitted:
    """Record a new init run of ``cfg``'s first control-plane node and send its chain."""
    from kubeboot.tasks.state import InitLock, LockHeldError
    from kubeboot.tasks.state.store import new_run_id

    node = cfg.node_name
    worker_ids = {node: node}
    # Parents without an action only group their children: they are no step of their own.
    planned = plan_init(cfg, "all", skip, upload_certs=upload_certs)
    steps = [(node, s) for s in planned if s.placed.phase.action or s.skip_reason]
    cluster = cfg.cluster.clusterName
    lock = InitLock(client, cluster, settings.lock_ttl)
    lock.release_if_owner_finished(store)
    run_id = new_run_id()
    try:
        token = lock.acquire(run_id)
    except LockHeldError as e:
        raise RunRefusedError(f"{e}; watch it with `kubeboot status {e.holder.owner} --watch`, "
                              f"or resume it with `kubeboot resume {e.holder.owner}` if it failed") from None
    plan = [(n, s.path) for n, s in steps]
    run = store.create_run(kind="init", cluster=cluster, config=config_documents(cfg), plan=plan, run_id=run_id)
    for n, s in steps:
        if s.skip_reason:
            store.mark_phase_skipped(run_id, n, s.path, reason=s.skip_reason)
    queues = [queue_for(s.placed.phase.target, worker_ids[n]) for n, s in steps] + [node_queue(node)]
    _declare(app, queues)
    runnable = [(n, s) for n, s in steps if s.runs_action]
    _chain(app, run_id, runnable, worker_ids).apply_async()
    return Submitted(run, token, sorted(set(queues)))


def resume(app: Celery, client: redis.Redis, store: RunStore, settings: Settings, run_id: str) -> RunRecord:
    """Send again every phase of ``run_id`` that has not succeeded (nor been skipped)."""
    from kubeboot.tasks.state import InitLock, LockHeldError

    run = store.get_run(run_id)
    if run is None:
        raise RunRefusedError(f"no run {run_id}; list runs with `kubeboot runs`")
    if run.status == "succeeded":
        return run
    if run.status in ("pending", "running"):
        raise RunRefusedError(f"run {run_id} is still {run.status}; follow it with `kubeboot status {run_id} --watch`")
    cfg = _config(store, run_id)
    if run.kind == "init":
        try:
            InitLock(client, run.cluster, settings.lock_ttl).acquire(run_id)
        except LockHeldError as e:
            raise RunRefusedError(f"cannot resume run {run_id}: {e}") from None
    done = {(r.node, r.path) for r in store.phase_records(run_id) if r.status in ("succeeded", "skipped")}
    by_path = {s.path: s for s in plan_init(cfg, "all")}
    todo = [(n, by_path[p]) for n, p in run.plan if (n, p) not in done and p in by_path]
    worker_ids = {n: n for n in run.nodes}
    _declare(app, [queue_for(s.placed.phase.target, worker_ids[n]) for n, s in todo])
    store.reopen_run(run_id)
    _chain(app, run_id, [(n, s) for n, s in todo if s.placed.phase.action], worker_ids).apply_async()
    refreshed = store.get_run(run_id)
    assert refreshed is not None
    return refreshed


def _config(store: RunStore, run_id: str) -> InitConfig:
    from kubeboot.config.loader import build_init_config

    return build_init_config(store.run_config(run_id), f"run {run_id}", fill_node_defaults=False)
