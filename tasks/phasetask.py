"""The Celery side of a phase: ``PhaseTask`` resolves the context, calls the pure phase function,
maps its errors and records every transition in the run state. Thin like a web view.

Task arguments are ids only: ``(run_id, node)``, and the keyword ``auth``: the token the control side
signed for this task (``tasks.trust.tokens``). Before anything else a copy is authorised
(``tasks.trust.guard``): a token that does not verify, names another task, run, node or queue, has
expired, or disagrees with the run's signed metadata, or a task older than the newest dispatch the node
ran, is refused: logged, recorded, REJECTED in Flower, never run. What a phase needs comes from the run
state (the config, sealed) and from the worker runtime (the node root). Results are always None.

Delivery is at least once (a redelivery after a worker died, the visibility timeout, unacked messages
restored at a restart, a recovery re-publish): every copy first claims the phase in the run state
(``RunStore.claim_phase``, one script), and only a copy holding the phase's lease runs the action.
What a copy ends as, in Flower:
- SUCCESS: it ran the action and recorded success, or it found the phase succeeded by a copy that
  died before sending the successor, and sent it. Celery then sends the chain's next link: the chain
  goes on from the one copy that succeeds.
- IGNORED: nothing left to do (the phase succeeded and its successor was delivered, the run has
  ended, another copy took its lease over). The chain does not go on from it.
- RETRY: a ``TemporaryError``, or another live copy holds the lease (this copy looks again when it ends).
- FAILURE: the chain stops; the phase and the run are recorded ``failed`` with the message.

Error taxonomy → what happens:
- ``TemporaryError(delay)``: phase recorded ``retrying``; Celery retry after ``backoff`` (jittered,
  capped by ``KUBEBOOT_RETRY_MAX_DELAY``); once ``max_attempts`` starts are used up, FAILURE.
- ``PermanentError``: phase and run recorded ``failed`` with the message; FAILURE, the chain stops.
  ``kubeboot resume`` continues from this phase once the cause is fixed.
- the soft time limit (``SoftTimeLimitExceeded``): as a permanent error. The hard limit kills the
  process: the worker's main process records the phase and the run ``failed`` (``on_failure``).
- anything else is a bug: the traceback goes to the worker log, a one-line summary to the run state.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from typing import TYPE_CHECKING, Any

from celery import Task, shared_task
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded, TimeLimitExceeded

from kubeboot.tasks import runtime
from kubeboot.tasks.errors import PermanentError, RunStopped, TemporaryError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases.context import ControlContext, NodeContext, PhaseContext
from kubeboot.tasks.retry import MAX_ATTEMPTS, backoff
from kubeboot.tasks.state.lease import LEASE_TTL, SEND_GRACE, Lease
from kubeboot.tasks.state.transitions import Verdict, new_owner

if TYPE_CHECKING:
    from kubeboot.tasks.state import RunStore

log = logging.getLogger("kubeboot.phase")

JOIN_TASK_PREFIX = "kubeboot.join."  # task names are kubeboot.<workflow>.<phase path>


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

    def run_phase(self, run_id: str, node: str, auth: str = "") -> None:
        authorize(self, run_id, node, self.phase_path, auth)
        rt = runtime.current()
        worker = str(self.request.hostname or "")
        lease = Lease(run_id, node, self.phase_path, new_owner(worker))
        successor = self._successor()
        claim = rt.store.claim_phase(run_id, node, self.phase_path, owner=lease.owner, worker=worker,
                                     max_attempts=self.phase_max_attempts, lease=LEASE_TTL, successor=successor)
        if claim.action == "run":
            with rt.leases.keep(lease):
                self._attempt(lease, claim.attempts, successor)
        elif claim.action == "send":
            log.warning("run %s node %s phase %s succeeded, but the copy that ran it stopped before sending "
                        "the next phase: sending it", run_id, node, self.phase_path)
        elif claim.action == "defer":
            # Another copy runs the phase now: look again when its lease ends (it may die meanwhile).
            raise self.retry(countdown=min(claim.wait, LEASE_TTL) + 0.2, max_retries=None)
        else:
            self._settle(claim)

    def _attempt(self, lease: Lease, attempt: int, successor: tuple[str, str] | None) -> None:
        run_id, node, path = lease.run_id, lease.node, lease.path
        store = runtime.current().store
        try:
            self._call(run_id, node)
        except TemporaryError as e:
            delay = backoff(attempt, e.delay, cap=runtime.current().settings.retry_max_delay)
            self._settle(store.retry_phase(run_id, node, path, owner=lease.owner, error=one_line(e), delay=delay,
                                           lease=LEASE_TTL))
            log.warning("run %s node %s phase %s: %s; will retry in %.1fs (attempt %d of %d)",
                        run_id, node, path, one_line(e), delay, attempt, self.phase_max_attempts)
            raise self.retry(countdown=delay, max_retries=None) from None
        except (PermanentError, SoftTimeLimitExceeded) as e:
            self._settle(store.fail_phase(run_id, node, path, owner=lease.owner, error=one_line(e)), ok="failed")
            raise
        except Exception as e:
            log.exception("run %s node %s phase %s: unexpected error (a bug)", run_id, node, path)
            self._settle(store.fail_phase(run_id, node, path, owner=lease.owner, error=one_line(e)), ok="failed")
            raise
        self._settle(store.complete_phase(run_id, node, path, owner=lease.owner, grace=SEND_GRACE,
                                          successor=successor))

    def _settle(self, verdict: Verdict, ok: str = "ok") -> None:
        """Go on after a transition that answered ``ok``; otherwise end this copy as the run state says."""
        if verdict.action == ok:
            return
        if verdict.action == "failed":
            raise RunStopped(verdict.detail)
        ignore_copy(self, f"phase {self.phase_path}: {verdict.detail}")

    def _successor(self) -> tuple[str, str] | None:
        """(node, phase path) of the chain's next link, when it is a phase (None: the finish task)."""
        chain = self.request.chain
        if not chain:
            return None
        nxt = chain[-1]
        path = getattr(self.app.tasks.get(nxt.get("task")), "phase_path", "")
        args: list[Any] = list(nxt.get("args") or [])
        return (str(args[1]), path) if path and len(args) >= 2 else None

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """The hard time limit killed the process that ran the phase: the worker's main process records
        the phase and the run failed (no copy is left to do it), which releases the run's lock."""
        if not isinstance(exc, TimeLimitExceeded) or len(args) < 2:
            return
        limit = exc.args[0] if exc.args else "?"
        limit = f"{limit:g}" if isinstance(limit, int | float) else limit
        message = f"killed by the hard time limit after {limit}s (KUBEBOOT_PHASE_TIME_LIMIT)"
        runtime.current().store.fail_phase(str(args[0]), str(args[1]), self.phase_path, owner="", error=message)
        log.error("run %s node %s phase %s: %s", args[0], args[1], self.phase_path, message)

    def _call(self, run_id: str, node: str) -> None:
        rt = runtime.current()
        secrets = RunSecrets(rt.store, run_id)
        scratch = rt.scratch(run_id, node)

        def out(line: str) -> None:
            log.info("[%s] %s", node, line)

        # A dry run's node phases write into a temporary root of (run, node) and its API calls are faked
        # (tasks.dryrun); anything else must reach a node worker: a control worker has no node root.
        dry = rt.dry_run(run_id)
        if self.phase_target == "node" and not dry and rt.role != "node":
            raise PermanentError(f"node phase {self.phase_path} of run {run_id} reached a {rt.role} worker")
        root = rt.dry_run_root(run_id, node) if dry else rt.root
        ctx: PhaseContext
        if self.name.startswith(JOIN_TASK_PREFIX):
            # A join's config is a JoinConfiguration plus what discovery learnt of the cluster.
            from kubeboot.tasks.joinrun import join_context

            ctx = join_context(rt, run_id, node, self.phase_target, out=out, secrets=secrets, scratch=scratch,
                               root=root)
        elif self.phase_target == "control":
            ctx = ControlContext(rt.config(run_id), node, out=out, secrets=secrets, scratch=scratch,
                                 address_map=rt.address_map, show_secrets=False)  # out is the worker log
        else:
            ctx = NodeContext(rt.config(run_id), NodeFS(root), out=out, secrets=secrets, scratch=scratch,
                              address_map=rt.address_map, kubelet=rt.kubelet, show_secrets=False)
        module, _, func = self.phase_action.partition(":")
        with rt.dry_run_session(run_id, out, workflow=self.name.split(".")[1]) if dry else contextlib.nullcontext():
            getattr(importlib.import_module(module), func)(ctx, *self.phase_args)


def authorize(task: Task, run_id: str, node: str, path: str, auth: str) -> None:
    """Refuse (reject, unrun) a copy the control side did not authorise for this worker (``tasks.trust.guard``)."""
    from kubeboot.tasks.trust import guard
    from kubeboot.tasks.trust.tokens import Refused

    rt = runtime.current()
    try:
        guard.authorize(rt, task=task.name, run_id=run_id, node=node, path=path, auth=auth)
    except Refused as e:
        reason = str(e)
    else:
        return
    worker = str(task.request.hostname or "")
    log.error("refused task %s[%s] (run %s node %s): %s", task.name, task.request.id, run_id, node or "-", reason)
    with contextlib.suppress(Exception):  # the refusal stands even if Redis cannot record it
        guard.record(rt.redis, worker=worker, task=task.name, task_id=str(task.request.id), run_id=run_id,
                     node=node, reason=reason)
    raise Reject(f"refused: {reason}", requeue=False)


def ignore_copy(task: Task, reason: str) -> None:
    """End this copy as IGNORED in Flower (a ``task-ignored`` event: Celery sends none for ``Ignore``)
    without acting: the chain does not go on from it."""
    log.info("task %s[%s]: %s: this copy stops here", task.name, task.request.id, reason)
    task.send_event("task-ignored", reason=reason)
    raise Ignore(reason)


def register_phase_task(*, name: str, path: str, action: str, args: tuple[str, ...], target: str = "node",
                        max_attempts: int | None = None) -> Any:
    """Register the Celery task ``name`` that runs phase ``path`` (idempotent per name). Its time limits
    are the app's (``KUBEBOOT_PHASE_TIME_LIMIT``), which start-up checks against the visibility timeout."""

    def run(self: PhaseTask, run_id: str, node: str, auth: str = "") -> None:
        self.run_phase(run_id, node, auth)

    run.__name__ = name.rsplit(".", 1)[-1].replace("-", "_")
    run.__qualname__ = run.__name__
    return shared_task(
        bind=True, base=PhaseTask, name=name, phase_path=path, phase_action=action, phase_args=args,
        phase_target=target, phase_max_attempts=max_attempts or MAX_ATTEMPTS,
    )(run)


@shared_task(bind=True, name="kubeboot.run.finish", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def finish_run(self: Task, run_id: str, auth: str = "") -> None:
    """Last link of every chain: the run succeeded (every planned phase done) and releases its lock,
    once; a duplicate finds the run ended and is ignored."""
    authorize(self, run_id, "", "", auth)
    verdict = runtime.current().store.complete_run(run_id)
    if verdict.action == "failed":
        raise RunStopped(verdict.detail)
    if verdict.action != "ok":
        ignore_copy(self, verdict.detail)
