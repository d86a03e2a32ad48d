"""What ``kubeboot status`` shows of a cluster run (one row per node) and of a batch (one row per
cluster, totals and an estimate of the time left). Reads the run state; writes nothing.

A batch of any size costs a constant number of round trips: one pipelined read of every cluster run's
summary fields, then, for the clusters running now (at most the batch's concurrency), their children's
statuses and the current child's phases. The ``-o json`` shapes (``to_json``) are stable and documented
in the README.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from kubeboot.workflows.cluster_plan import child_id, cluster_run_id

if TYPE_CHECKING:
    from kubeboot.tasks.state import PhaseRecord, RunRecord, RunStore

ACTIVE: Final = ("pending", "running")
_SUMMARY: Final = ("status", "started", "finished", "error", "done", "nodes")


def seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)


def estimate(finished: list[float], running_elapsed: list[float], pending: int, concurrency: int) -> float | None:
    """Seconds until the batch ends: every cluster left takes the mean of those that ended (one still
    running has that minus what it already ran), ``concurrency`` at a time. None before one ended."""
    if not running_elapsed and not pending:
        return 0.0
    if not finished:
        return None
    mean = sum(finished) / len(finished)
    work = pending * mean + sum(max(mean - e, 0.0) for e in running_elapsed)
    lanes = max(1, min(concurrency, pending + len(running_elapsed)))
    return round(work / lanes, 1)


def current_phase(records: list[PhaseRecord]) -> PhaseRecord | None:
    """The phase a run is at: the first not done (running, retrying, failed or next)."""
    return next((r for r in records if r.status not in ("succeeded", "skipped")), None)


# --- a cluster run ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeRow:
    node: str
    step: str
    status: str
    run: str
    phase: str | None
    attempts: int
    started: str | None
    finished: str | None
    error: str | None
    waiting: str | None

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "step": self.step, "status": self.status, "run": self.run, "phase": self.phase,
                "attempts": self.attempts, "started": self.started, "finished": self.finished,
                "duration": seconds(self.started, self.finished), "error": self.error, "waiting": self.waiting}


def cluster_rows(store: RunStore, run: RunRecord) -> list[NodeRow]:
    from kubeboot.workflows.liveness import waiting_on

    steps = {r.node: r for r in store.phase_records(run.id)}
    rows = []
    for node, step in run.plan:
        kid = child_id(run.id, node)
        child = store.get_run(kid)
        rec = steps.get(node)
        phase = waiting = error = None
        if child is not None:
            records = store.phase_records(kid)
            at = current_phase(records)
            phase = at.path if at else None
            error = child.error
            waiting = waiting_on(store.client, child, records)
        status = child.status if child else (rec.status if rec else "pending")
        rows.append(NodeRow(node, step, status, kid if child else "", phase, rec.attempts if rec else 0,
                            child.started if child else None, child.finished if child else None,
                            error or (rec.last_error if rec and rec.status == "failed" else None), waiting))
    return rows


# --- a batch ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterRow:
    cluster: str
    run: str
    status: str
    phase: str | None
    nodes_done: int
    nodes_total: int
    started: str | None
    finished: str | None
    error: str | None

    def duration(self, now: str) -> float | None:
        return seconds(self.started, self.finished or (now if self.started else None))

    def to_json(self, now: str) -> dict[str, Any]:
        return {"cluster": self.cluster, "run": self.run, "status": self.status, "phase": self.phase,
                "nodes": {"done": self.nodes_done, "total": self.nodes_total}, "started": self.started,
                "finished": self.finished, "duration": self.duration(now), "error": self.error}


@dataclass(frozen=True)
class BatchView:
    run: RunRecord
    rows: list[ClusterRow]
    concurrency: int
    eta: float | None
    now: str

    def totals(self) -> dict[str, int]:
        counts = dict.fromkeys(("pending", "running", "succeeded", "failed"), 0)
        for row in self.rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        return {"clusters": len(self.rows), **counts,
                "nodes": sum(r.nodes_total for r in self.rows), "nodesDone": sum(r.nodes_done for r in self.rows)}

    def to_json(self) -> dict[str, Any]:
        return {"batch": {**self.run.to_json(), "concurrency": self.concurrency, "totals": self.totals(),
                          "duration": seconds(self.run.started or self.run.created, self.run.finished or self.now),
                          "estimatedSecondsLeft": self.eta},
                "clusters": [r.to_json(self.now) for r in self.rows]}


def batch_view(store: RunStore, run: RunRecord, now: str, concurrency: int) -> BatchView:
    from kubeboot.tasks.state.parents import Parents

    names = [n for n, _ in run.plan]
    ids = [cluster_run_id(run.id, n) for n in names]
    rows_raw = Parents(store.client).statuses(ids, *_SUMMARY[1:])
    rows = [_cluster_row(store, name, kid, raw) for name, kid, raw in zip(names, ids, rows_raw, strict=True)]
    finished = [d for r in rows if r.status in ("succeeded", "failed") and (d := r.duration(now)) is not None]
    running = [r.duration(now) or 0.0 for r in rows if r.status in ACTIVE and r.run]
    pending = sum(1 for r in rows if not r.run or (r.status == "pending" and not r.started))
    return BatchView(run, rows, concurrency, estimate(finished, running, pending, concurrency), now)


def _cluster_row(store: RunStore, name: str, kid: str, raw: dict[str, str | None]) -> ClusterRow:
    import json

    if raw["status"] is None:
        return ClusterRow(name, "", "pending", None, 0, 0, None, None, None)
    total = len(json.loads(raw["nodes"] or "[]"))
    phase = _running_phase(store, kid) if raw["status"] in ACTIVE else None
    return ClusterRow(name, kid, raw["status"], phase, int(raw["done"] or 0), total, raw["started"],
                      raw["finished"], raw["error"])


def _running_phase(store: RunStore, cluster_run: str) -> str | None:
    """"<node> <phase>" of the cluster's first active child (the one it waits for)."""
    run = store.get_run(cluster_run)
    if run is None:
        return None
    from kubeboot.tasks.state.parents import Parents

    kids = [child_id(cluster_run, n) for n, _ in run.plan]
    for (node, _), kid, row in zip(run.plan, kids, Parents(store.client).statuses(kids), strict=True):
        if row["status"] in ACTIVE:
            at = current_phase(store.phase_records(kid))
            return f"{node} {at.path}" if at else node
    return None
