"""Human and machine views of cluster and batch runs: the tables, the live follow, the ``-o json`` shapes.

``status CLUSTER_RUN -o json``::

    {"cluster": {<the run object>}, "nodes": [{node, step, status, run, phase, attempts, started, finished,
     duration, error, waiting}, ...], "flower": "<url>"}

``status BATCH -o json`` (and ``submit batch --wait -o json``)::

    {"batch": {<the run object>, concurrency, totals: {clusters, pending, running, succeeded, failed, nodes,
               nodesDone}, duration, estimatedSecondsLeft},
     "clusters": [{"cluster": NAME, "run": RUN_ID, "status": ..., "phase": "<node> <phase>" | null,
                   "nodes": {"done": D, "total": T}, "started", "finished", "duration", "error"}, ...],
     "flower": "<url>"}

Every text shown passes through ``tasks.redaction``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubeboot.tasks.redaction import redact

if TYPE_CHECKING:
    from kubeboot.tasks.state import RunRecord, RunStore
    from kubeboot.workflows.parent_status import BatchView, NodeRow

FINAL = ("succeeded", "failed")
MARKS = {"succeeded": "✓", "failed": "✗", "running": "▶", "pending": "·"}


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


# --- a cluster ----------------------------------------------------------------------------------------------

def cluster_json(run: RunRecord, rows: list[NodeRow], flower: str) -> str:
    return json.dumps({"cluster": run.to_json(), "nodes": [r.to_json() for r in rows], "flower": flower}, indent=2)


def cluster_table(run: RunRecord, rows: list[NodeRow], flower: str) -> str:
    done = sum(r.status == "succeeded" for r in rows)
    lines = [f"cluster run {run.id}  cluster {run.cluster}  {run.status.upper()}  ({done}/{len(rows)} nodes done, "
             f"created {run.created}){'  DRY RUN' if run.dry_run else ''}",
             f"  {'NODE':<18} {'STEP':<5} {'STATUS':<11} {'RUN':<28} PHASE / ERROR"]
    for r in rows:
        detail = r.phase or ""
        if r.error:
            detail = redact(r.error)
        elif r.waiting:
            detail = f"{detail}  waiting: {r.waiting}".strip()
        lines.append(f"  {r.node:<18} {r.step:<5} {MARKS.get(r.status, '?')} {r.status:<9} {r.run or '-':<28} "
                     f"{detail}".rstrip())
    if run.error:
        lines.append(f"  error: {redact(run.error)}")
    lines.append(f"  Flower: {flower}")
    return "\n".join(lines)


# --- a batch ------------------------------------------------------------------------------------------------

def batch_json(view: BatchView, flower: str) -> str:
    return json.dumps({**view.to_json(), "flower": flower}, indent=2)


def batch_summary(view: BatchView) -> str:
    t = view.totals()
    ended = t["succeeded"] + t["failed"]
    left = "" if view.run.status in FINAL else (
        f", about {_clock(view.eta)} left" if view.eta is not None else ", time left not known yet")
    elapsed = view.to_json()["batch"]["duration"]
    return (f"{ended}/{t['clusters']} clusters ended ({t['succeeded']} succeeded, {t['failed']} failed, "
            f"{t['running']} running, {t['pending']} pending), {t['nodesDone']}/{t['nodes']} nodes, "
            f"{_clock(elapsed)}{left}")


def batch_table(view: BatchView, flower: str) -> str:
    run = view.run
    lines = [f"batch {run.id}  {run.cluster}  {run.status.upper()}  {batch_summary(view)}"
             f"{'  DRY RUN' if run.dry_run else ''}",
             f"  {'CLUSTER':<16} {'RUN':<26} {'STATUS':<11} {'PHASE':<34} {'NODES':<6} {'TIME':<7} ERROR"]
    for r in view.rows:
        lines.append(f"  {r.cluster:<16} {r.run or '-':<26} {MARKS.get(r.status, '?')} {r.status:<9} "
                     f"{r.phase or '-':<34} {f'{r.nodes_done}/{r.nodes_total}':<6} {_clock(r.duration(view.now)):<7} "
                     f"{redact(r.error or '')}".rstrip())
    if run.error:
        lines.append(f"  error: {redact(run.error)}")
    lines.append(f"  Flower: {flower}")
    return "\n".join(lines)


# --- following ----------------------------------------------------------------------------------------------

def follow(store: RunStore, run_id: str, out: Callable[[str], None], *, summary: Callable[[], str] | None = None,
           deadline: float | None = None, every: float = 10.0) -> str:
    """Print the parent's events (and, for a cluster, its children's) until it ends; ``summary`` every
    ``every`` seconds. Returns the final status.

    Each look gathers what every stream gained (a child found in it is read in the same look) and prints
    it in the order Redis recorded it: stream entry ids are Redis's clock, one clock for every run."""
    from kubeboot.workers.progress import event_line

    seen: dict[str, str] = {run_id: "0"}
    record = store.get_run(run_id)
    is_cluster = record is not None and record.kind == "cluster"
    last_summary = time.monotonic()
    while True:
        status = store.run_status(run_id) or "unknown"
        gained: list[tuple[tuple[int, int], str, Any]] = []
        pending = list(seen)
        while pending:
            stream = pending.pop()
            for ev in store.events(stream, seen[stream]):
                seen[stream] = ev.id
                gained.append((_entry_order(ev.id), stream, ev))
                child = _child_of(ev, run_id) if is_cluster and stream == run_id else None
                if child and child not in seen:
                    seen[child] = "0"
                    pending.append(child)
        for _, stream, ev in sorted(gained, key=lambda g: g[0]):
            out(_prefixed(stream, run_id, event_line(ev)))
        if status in FINAL or (deadline is not None and time.monotonic() > deadline):
            return status
        if summary and time.monotonic() - last_summary >= every:
            out(summary())
            last_summary = time.monotonic()
        time.sleep(0.5)


def _entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id ``<ms>-<seq>`` as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _prefixed(stream: str, root: str, line: str) -> str:
    return line if stream == root else f"{line}  ({stream})"


def _child_of(ev: Any, run_id: str) -> str | None:
    """A cluster run's step event names a node whose child run's events are worth following."""
    if ev.event != "started" or not ev.node:
        return None
    from kubeboot.workflows.cluster_plan import child_id

    return child_id(run_id, ev.node)
