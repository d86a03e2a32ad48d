"""No hung run: what a run is waiting for, and re-sending what a dead worker left behind.

- ``waiting_on``: the queue of a run's next phase (its *frontier*: the first planned phase not done,
  or the finish task once every phase is) has no live consumer (``tasks.state.presence``): ``status``
  says "waiting: no worker consumes node.cp2".
- ``sweep``: a worker killed whole (main process and pool), or one cut off from Redis, leaves its
  phase's message unacked, and the Redis broker gives it back only after the visibility timeout (600 s
  by default). Instead, every phase transition records a deadline in the run state's lease index (the
  lease of a running copy, renewed while it runs; a retry's due time; a success's grace for its
  successor to start), and every worker sweeps the index at start-up and every ``SWEEP_EVERY``
  seconds. A run whose deadline passed is re-sent from its frontier (by exactly one sweeper,
  ``RunStore.postpone_lease``) when its phase is stuck, not merely late:
    - a running phase whose lease lapsed: the copy running it stopped renewing it (its process died,
      or its worker lost Redis and cancelled it);
    - a retry or a success whose worker is gone, or was restarted since (``presence.worker_since``):
      the retry's message, or the successor it was about to send, died with it;
    - a retry or a success whose worker lives, once ``STALE_AFTER`` has passed: its message was lost
      (not waiting in a backlog: re-sending those would only lengthen the backlog).
  The re-sent copy, the original message restored later, or a copy still held by a live worker are
  duplicates that the run state dedupes (``tasks.phasetask``): the action runs once, the run ends once.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import TYPE_CHECKING

from kubeboot.workflows.routing import routed_queue
from kubeboot.workflows.runs import DONE, chain_of, declare, finish_signature, remaining_steps

if TYPE_CHECKING:
    import redis
    from celery import Celery

    from kubeboot.tasks.state import PhaseRecord, RunRecord, RunStore

log = logging.getLogger("kubeboot.recovery")
ACTIVE = ("pending", "running")


@cache
def _targets(kind: str) -> dict[str, str]:
    """Phase path → target ("node" / "control") of the workflow of a run kind."""
    from kubeboot.workflows.phase import walk
    from kubeboot.workflows.registry import WORKFLOWS

    return {p.path: p.phase.target for p in walk(WORKFLOWS.get(kind, ()), kind)}


def frontier_queue(run: RunRecord, records: list[PhaseRecord]) -> tuple[PhaseRecord | None, str]:
    """The first planned phase not done (None once all are: the finish task is next) and its queue."""
    frontier = next((r for r in records if r.status not in DONE), None)
    if frontier is None:
        return None, routed_queue(run.route, "control", "")
    return frontier, routed_queue(run.route, _targets(run.kind).get(frontier.path, "node"), frontier.node)


def waiting_on(client: redis.Redis, run: RunRecord, records: list[PhaseRecord]) -> str | None:
    """Why an active run cannot progress now, if it is that no worker consumes its next queue."""
    from kubeboot.tasks.state.presence import consumer

    if run.status not in ACTIVE:
        return None
    _, queue = frontier_queue(run, records)
    return None if consumer(client, queue) else f"no worker consumes {queue}"


SWEEP_EVERY = 5.0  # seconds between two sweeps of one worker
RESEND_AGAIN = 30.0  # a re-sent run whose deadline passes again is re-sent after this long
LOOK_AGAIN = 2 * SWEEP_EVERY  # a late run (or one whose queue nobody consumes) is looked at again then
STALE_AFTER = 120.0  # a retry or success of a live worker whose next step has not started by then was lost


def sweep(app: Celery, client: redis.Redis, store: RunStore) -> list[str]:
    """Re-send the runs whose lease deadline passed (module docstring); returns what it re-sent."""
    from kubeboot.tasks.state.presence import consumer, now_ms

    resent = []
    now = now_ms(client)
    for run_id, node, path, seen in store.overdue_leases():
        run = store.get_run(run_id)
        records = store.phase_records(run_id) if run and run.status in ACTIVE else []
        entry = next((r for r in records if (r.node, r.path) == (node, path)), None)
        frontier, queue = frontier_queue(run, records) if run and entry else (None, "")
        if entry is None or (entry.status in DONE and frontier is not None and frontier.status != "pending"):
            store.drop_lease(run_id, node, path)  # the run ended, or moved on: nothing is stuck
            continue
        if consumer(client, queue) is None or not _stuck(client, entry, now):
            store.postpone_lease(run_id, node, path, seen=seen, delay=LOOK_AGAIN)
            continue
        if not store.postpone_lease(run_id, node, path, seen=seen, delay=RESEND_AGAIN):
            continue  # another worker's sweep took it
        try:
            assert run is not None
            resent.append(_resend(app, store, run, records, frontier))
        except Exception:  # one run's trouble must not stop the sweep (it comes back after RESEND_AGAIN)
            log.exception("run %s: could not send its next phase again", run_id)
    return resent


def _stuck(client: redis.Redis, entry: PhaseRecord, now: int) -> bool:
    """Whether the phase behind an overdue entry can no longer move on by itself (module docstring)."""
    from kubeboot.tasks.state.lease import LEASE_TTL
    from kubeboot.tasks.state.presence import worker_since

    if entry.status == "running":
        return True
    moved_at = (entry.lease or 0) - round(LEASE_TTL * 1000)  # a success: when it ended; a retry: when due
    since = worker_since(client, entry.worker) if entry.worker else None
    return since is None or since > moved_at or now - moved_at > STALE_AFTER * 1000


def _resend(app: Celery, store: RunStore, run: RunRecord, records: list[PhaseRecord],
            frontier: PhaseRecord | None) -> str:
    if frontier is None:
        finish_signature(app, run, store).apply_async()
        log.warning("[recovery] run %s: every phase is done but it has not finished: sending its finish again",
                    run.id)
        return f"{run.id} finish"
    todo = remaining_steps(store, run, records)
    declare(app, [routed_queue(run.route, s.placed.phase.target, n) for n, s in todo])
    chain_of(app, run, todo, store).apply_async()
    log.warning("[recovery] run %s: node %s phase %s (%s, %d attempt(s) so far) missed its deadline: sending it "
                "and the rest of the run again", run.id, frontier.node, frontier.path, frontier.status,
                frontier.attempts)
    return f"{run.id} {frontier.node} {frontier.path}"
