"""The Celery tasks of parent runs, the run-end hook that drives them, and their sweep.

- ``kubeboot.cluster.advance(run_id)`` / ``kubeboot.batch.advance(run_id)``: move a cluster or batch on
  (``workflows.cluster_advance``, ``workflows.batch_runs``). Idempotent: sent whenever a child ends and
  at every sweep, any number may run at once.
- ``kubeboot.cluster.ready(run_id)``: the body of the workers' chord: the cluster succeeds once every
  node is a registered Node (short retries, bounded by ``READY_DEADLINE``).

Tasks carry the parent's run id (Flower shows it; a search for a batch or cluster id finds these
and, through the child ids that extend it, every phase under it) and, like every phase, the token the
control side signed for this task, run and queue (``auth``, ``tasks.trust.tokens``): node workers may
push onto ``control`` (their chain's next link goes there), so a parent task without a valid token is
refused unrun (``tasks.trust.guard``) — it neither ends a cluster (``ready``) nor has the control worker
forward a chain attached to it. They go to the run's control queue: ``control``, or ``dry-run`` for a
dry run.

``connect(app)`` (called by the app factory) registers the end hook: in any process, when a transition
ends a run that has a parent, the parent's advance is sent from there, by the task that finished the
child — no long-lived coordinator. A node worker holds no signing key: when a child fails on it, it
makes the parent due now in ``parents:due`` instead, and the control worker's next sweep (every
``liveness.SWEEP_EVERY``) sends the advance. ``sweep`` (from the control worker's heartbeat) sends the
advance of every parent whose ``parents:due`` time came, in case a hook died with its process. (What a
node's Redis user can still do, putting a parent in ``parents:due``, only has the control side look at
that parent now, as it does every ``SWEEP_DELAY`` anyway.)
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

from celery import Task, shared_task

from kubeboot.tasks.phasetask import authorize
from kubeboot.workflows.cluster_runs import ADVANCE_TASK, READY_TASK, SWEEP_DELAY, Engine

if TYPE_CHECKING:
    from celery import Celery

    from kubeboot.tasks.state import RunStore

log = logging.getLogger("kubeboot.parents")
BATCH_ADVANCE: Final = "kubeboot.batch.advance"
READY_RETRY: Final = 2.0
_APP: list[Celery] = []


def engine_of(app: Any) -> Engine:
    from kubeboot.tasks import runtime

    rt = runtime.current()
    return Engine(app, rt.redis, rt.store, rt.settings)


@shared_task(bind=True, name=ADVANCE_TASK, acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def cluster_advance(self: Task, run_id: str, auth: str = "") -> None:
    from kubeboot.workflows.cluster_advance import advance

    authorize(self, run_id, "", "", auth)
    advance(engine_of(self.app), run_id)


@shared_task(bind=True, name=BATCH_ADVANCE, acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def batch_advance(self: Task, run_id: str, auth: str = "") -> None:
    from kubeboot.workflows.batch_runs import advance

    authorize(self, run_id, "", "", auth)
    advance(engine_of(self.app), run_id)


@shared_task(bind=True, name=READY_TASK, acks_late=True, ignore_result=True, max_retries=None)  # type: ignore[untyped-decorator]
def cluster_ready(self: Task, run_id: str, auth: str = "") -> None:
    from datetime import datetime

    from kubeboot.workflows.cluster_runs import ready

    authorize(self, run_id, "", "", auth)  # its retries carry the same token (it outlives READY_DEADLINE)
    engine = engine_of(self.app)
    sent = engine.parents.fields(run_id, "ready_sent")["ready_sent"]
    first = datetime.fromisoformat(sent).timestamp() if sent else time.time()
    missing = ready(engine, run_id, first, time.time())
    if missing:
        log.info("cluster run %s: %s; will look again in %.0fs", run_id, missing, READY_RETRY)
        raise self.retry(countdown=READY_RETRY)


# --- the end hook and the sweep --------------------------------------------------------------------------

def _advance_task(kind: str | None) -> str | None:
    return {"cluster": ADVANCE_TASK, "batch": BATCH_ADVANCE}.get(kind or "")


def notify_parent(store: RunStore, run_id: str) -> None:
    """A run ended here: send its parent's advance (registered with ``tasks.state.parents.on_run_end``)."""
    if not _APP:
        return
    from kubeboot.tasks.state.parents import Parents

    parents = Parents(store.client)
    parent = parents.fields(run_id, "parent")["parent"]
    if not parent:
        return
    task = _advance_task(parents.fields(parent, "kind")["kind"])
    if task is None:
        return
    if store.keys.control is None:  # a node worker: no key to sign with; the control worker's sweep sends it
        parents.schedule(parent, 0)
        return
    from kubeboot.config.settings import Settings

    Engine(_APP[0], store.client, store, Settings.from_env()).send(task, parent)


def connect(app: Celery) -> None:
    """Parents advance from whatever process ends their children (once per process)."""
    from kubeboot.tasks.state.parents import on_run_end

    _APP[:] = [app]
    on_run_end(notify_parent)


def sweep(app: Celery) -> list[str]:
    """Send the advance of every parent whose time came (exactly one sweeper sends each)."""
    engine = engine_of(app)
    sent = []
    for run_id in engine.parents.claim_due(SWEEP_DELAY):
        task = _advance_task(engine.parents.fields(run_id, "kind")["kind"])
        if task is None:
            engine.parents.unschedule(run_id)
            continue
        engine.send(task, run_id)
        sent.append(run_id)
    return sent
