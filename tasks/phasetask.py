"""The Celery side of a phase: ``PhaseTask`` resolves the context, calls the pure phase function,
maps its errors and records every transition in the run state. Thin like a web view.

Task arguments are ids only: ``(run_id, node)``. What a phase needs comes from the run state
(the config, encrypted) and from the worker runtime (the node root). Results are always None.

Error taxonomy → what happens:
- ``TemporaryError(delay)``: phase recorded ``retrying``; Celery retry after ``backoff`` (jittered,
  capped far below the visibility timeout); after ``MAX_ATTEMPTS`` starts the run fails.
- ``PermanentError``: phase and run recorded ``failed`` with the message; the chain stops.
  ``kubeboot resume`` continues from this phase once the cause is fixed.
- anything else is a bug: the traceback goes to the worker log, a one-line summary to the run state.
A phase already recorded ``succeeded`` (a redelivery, a resumed run) returns at once.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from kubeboot.tasks import runtime
from kubeboot.tasks.errors import PermanentError, TemporaryError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases.context import ControlContext, NodeContext, PhaseContext
from kubeboot.tasks.retry import MAX_ATTEMPTS, backoff
from kubeboot.tasks.state import InitLock, LockHeldError

if TYPE_CHECKING:
    from kubeboot.tasks.state import RunStore

log = logging.getLogger("kubeboot.phase")

JOIN_TASK_PREFIX = "kubeboot.join."  # task names are kubeboot.<workflow>.<phase path>

DEFAULT_SOFT_TIME_LIMIT = 120.0  # a phase that runs longer is stuck: waiting is done by retries
DEFAULT_TIME_LIMIT = 150.0


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, PermanentError | TemporaryError) else f"{type(err).__name__}: {text}"


class RunSecrets:
    """A run's secrets in the run state, encrypted (``ctx.secrets`` of phases run as tasks)."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self._store = store
        self._run_id = run_id

    def put(self, name: str, value: bytes) -> None:
        self._store.put_secret(self._run_id, name, value)

    def get(self, name: str) -> bytes | None:
        return self._store.get_secret(self._run_id, name)


class PhaseTask(Task):  # type: ignore[misc]  # celery ships no type information
    """Base of every phase task; ``phase_path``/``phase_action``/``phase_args`` set per task."""

    abstract = True
    acks_late = True  # phases are idempotent: a phase whose worker died is delivered again
    reject_on_worker_lost = True  # ... and a killed prefork child's message is requeued at once
    # Celery's own retry ceiling is off (its default is 3): the run state counts attempts, including
    # redeliveries Celery does not see, and phase_max_attempts ends a phase that keeps failing.
    max_retries = None
    ignore_result = True  # ids in, nothing out: later phases read the run state, never results
    typing = True
    phase_path: str = ""
    phase_action: str = ""
    phase_args: tuple[str, ...] = ()
    phase_target: str = "node"
    phase_max_attempts: int = MAX_ATTEMPTS

    def run_phase(self, run_id: str, node: str) -> None:
        rt = runtime.current()
        store = rt.store
        path = self.phase_path
        worker = str(self.request.hostname or "")
        if not self._hold_cluster_lock(run_id):
            return
        attempt = store.mark_phase_started(run_id, node, path, worker=worker)
        if attempt is None:
            log.info("run %s node %s phase %s already succeeded: nothing to do", run_id, node, path)
            return
        if attempt > self.phase_max_attempts:
            self._fail(run_id, node, f"giving up after {self.phase_max_attempts} attempts")
            return
        try:
            self._call(run_id, node)
        except TemporaryError as e:
            delay = backoff(attempt, e.delay)
            store.mark_phase_retrying(run_id, node, path, error=one_line(e), delay=delay)
            log.warning("run %s node %s phase %s: %s; will retry in %.1fs (attempt %d of %d)",
                        run_id, node, path, one_line(e), delay, attempt, self.phase_max_attempts)
            raise self.retry(countdown=delay, max_retries=None) from None
        except (PermanentError, SoftTimeLimitExceeded) as e:
            self._fail(run_id, node, one_line(e))
            raise
        except Exception as e:
            log.exception("run %s node %s phase %s: unexpected error (a bug)", run_id, node, path)
            self._fail(run_id, node, one_line(e))
            raise
        store.mark_phase_succeeded(run_id, node, path)

    def _call(self, run_id: str, node: str) -> None:
        rt = runtime.current()
        secrets = RunSecrets(rt.store, run_id)
        scratch = rt.scratch(run_id, node)

        def out(line: str) -> None:
            log.info("[%s] %s", node, line)

        ctx: PhaseContext
        if self.name.startswith(JOIN_TASK_PREFIX):
            # A join's config is a JoinConfiguration plus what discovery learnt of the cluster.
            from kubeboot.tasks.joinrun import join_context

            ctx = join_context(rt, run_id, node, self.phase_target, out=out, secrets=secrets, scratch=scratch)
        elif self.phase_target == "control":
            ctx = ControlContext(rt.config(run_id), node, out=out, secrets=secrets, scratch=scratch,
                                 address_map=rt.address_map, show_secrets=False)  # out is the worker log
        else:
            ctx = NodeContext(rt.config(run_id), NodeFS(rt.root), out=out, secrets=secrets, scratch=scratch,
                              address_map=rt.address_map, kubelet=rt.kubelet, show_secrets=False)
        module, _, func = self.phase_action.partition(":")
        getattr(importlib.import_module(module), func)(ctx, *self.phase_args)

    def _hold_cluster_lock(self, run_id: str) -> bool:
        """Re-enter (and extend) the run's cluster lock; False when the run has ended (a stale
        redelivery); a run that lost its lock to another run stops."""
        rt = runtime.current()
        run = rt.store.get_run(run_id)
        if run is None:
            raise PermanentError(f"run {run_id} does not exist in the run state")
        if run.status in ("succeeded", "failed"):
            log.warning("run %s has %s: not running phase %s again", run_id, run.status, self.phase_path)
            return False
        if run.kind != "init":
            return True
        try:
            InitLock(rt.redis, run.cluster, rt.settings.lock_ttl).acquire(run_id)
        except LockHeldError as e:
            raise PermanentError(f"run {run_id} was superseded: {e}") from None
        return True

    def _fail(self, run_id: str, node: str, message: str) -> None:
        rt = runtime.current()
        rt.store.mark_phase_failed(run_id, node, self.phase_path, error=message)
        rt.store.finish_run(run_id, status="failed", error=f"node {node} phase {self.phase_path}: {message}")
        run = rt.store.get_run(run_id)
        if run is not None and run.kind == "init":
            InitLock(rt.redis, run.cluster, rt.settings.lock_ttl).release(run_id)


def register_phase_task(*, name: str, path: str, action: str, args: tuple[str, ...], target: str = "node",
                        max_attempts: int | None = None,
                        soft_time_limit: float = DEFAULT_SOFT_TIME_LIMIT,
                        time_limit: float = DEFAULT_TIME_LIMIT) -> Any:
    """Register the Celery task ``name`` that runs phase ``path`` (idempotent per name)."""

    def run(self: PhaseTask, run_id: str, node: str) -> None:
        self.run_phase(run_id, node)

    run.__name__ = name.rsplit(".", 1)[-1].replace("-", "_")
    run.__qualname__ = run.__name__
    return shared_task(
        bind=True, base=PhaseTask, name=name, phase_path=path, phase_action=action, phase_args=args,
        phase_target=target, phase_max_attempts=max_attempts or MAX_ATTEMPTS,
        soft_time_limit=soft_time_limit, time_limit=time_limit,
    )(run)


@shared_task(bind=True, name="kubeboot.run.finish", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def finish_run(self: Task, run_id: str) -> None:
    """Last link of every chain: the run succeeded; release the cluster lock."""
    rt = runtime.current()
    run = rt.store.get_run(run_id)
    if run is None or run.status == "failed":
        return
    rt.store.finish_run(run_id, status="succeeded")
    if run.kind == "init":
        InitLock(rt.redis, run.cluster, rt.settings.lock_ttl).release(run_id)
