"""Human and machine views of a run: the progress table, the live event log, the ``-o json`` shape.

``-o json`` of ``status`` (stable, documented in the README)::

    {"run": {id, kind, cluster, specDigest, status, created, started, finished, error, nodes},
     "phases": [{node, phase, status, attempts, worker, started, finished, duration, delayed,
                 lastError}, ...],            # in plan order
     "flower": "<url of this run's tasks in Flower>",
     "waiting": "no worker consumes node.cp2" | null,
     "joinCommands": [{role: "control-plane" | "worker", command: "kubeadm join ..."}, ...]}

``waiting`` is set while the run is pending or running and no live worker consumes the queue of its
next phase (workers beat every 2 s, a beat lasts 6 s: ``tasks.state.presence``); the text view shows
it as ``waiting: no worker consumes node.cp2``.

``joinCommands`` is present only with ``status --show-join-command``: the commands hold a bootstrap
token and the certificate key, read from the run's encrypted secrets. Every other text shown here
(events, errors) passes through ``tasks.redaction`` first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubeboot.tasks.redaction import redact

if TYPE_CHECKING:
    from kubeboot.tasks.state import Event, PhaseRecord, RunRecord, RunStore

MARKS = {"succeeded": "✓", "failed": "✗", "running": "▶", "retrying": "↻", "skipped": "-", "pending": "·"}
FINAL = ("succeeded", "failed")


def status_json(run: RunRecord, phases: list[PhaseRecord], flower: str,
                join_commands: list[dict[str, str]] | None = None, *, waiting: str | None = None) -> str:
    view: dict[str, Any] = {"run": run.to_json(), "phases": [p.to_json() for p in phases], "flower": flower,
                            "waiting": waiting}
    if join_commands is not None:
        view["joinCommands"] = join_commands
    return json.dumps(view, indent=2)


def join_commands(text: str) -> list[dict[str, str]]:
    """The ``kubeadm join`` commands of show-join-command's text, each on one line, in print order."""
    commands: list[str] = []
    continued = False
    for line in text.splitlines():
        part = line.strip()
        if continued:
            commands[-1] += " " + part.removesuffix("\\").strip()
        elif part.startswith("kubeadm join "):
            commands.append(part.removesuffix("\\").strip())
        else:
            continue
        continued = part.endswith("\\")
    return [{"role": "control-plane" if " --control-plane" in cmd else "worker", "command": cmd}
            for cmd in commands]


def _phase_line(rec: PhaseRecord) -> str:
    mark = MARKS.get(rec.status, "?")
    detail = ""
    if rec.duration is not None and rec.status != "skipped":
        detail = f"{rec.duration:6.2f}s"
    if rec.attempts > 1:
        detail += f"  attempt {rec.attempts}"
    if rec.status in ("retrying", "failed") and rec.last_error:
        detail += f"  {redact(rec.last_error)}"
    if rec.status == "skipped" and rec.last_error:
        detail += f"  ({rec.last_error})"
    elif rec.status == "running" and rec.worker:
        detail += f"  on {rec.worker}"
    return f"    {mark} {rec.path:<34} {detail}".rstrip()


def render_table(run: RunRecord, phases: list[PhaseRecord], flower: str, *, waiting: str | None = None) -> str:
    done = sum(p.status in ("succeeded", "skipped") for p in phases)
    lines = [f"run {run.id}  {run.kind} of cluster {run.cluster}  {run.status.upper()}  "
             f"({done}/{len(phases)} phases done, created {run.created})"]
    for node in run.nodes:
        lines.append(f"  node {node}")
        lines += [_phase_line(p) for p in phases if p.node == node]
    if run.error:
        lines.append(f"  error: {redact(run.error)}")
    if waiting:
        lines.append(f"  waiting: {waiting}")
    lines.append(f"  Flower: {flower}")
    return "\n".join(lines)


def event_line(ev: Event) -> str:
    clock = ev.ts[11:23] if len(ev.ts) >= 23 else ev.ts
    if ev.is_run_event:
        return f"{clock}  run {ev.event}{': ' + redact(ev.message) if ev.message else ''}"
    attempt = f" (attempt {ev.attempt})" if ev.attempt > 1 else ""
    msg = f": {redact(ev.message)}" if ev.message else ""
    return f"{clock}  [{ev.node}] {ev.phase} {ev.event}{attempt}{msg}"


def watch(store: RunStore, run_id: str, out: Callable[[str], None], *, poll_ms: int = 1000,
          deadline: float | None = None) -> str:
    """Print the run's events as they happen until it ends; returns the final status."""
    last = "0"
    for ev in store.events(run_id):
        out(event_line(ev))
        last = ev.id
    while True:
        status = store.run_status(run_id) or "unknown"
        if status in FINAL or (deadline is not None and time.monotonic() > deadline):
            # drain what arrived between the last read and the final status
            for ev in store.events(run_id, last):
                out(event_line(ev))
            return status
        for ev in store.events(run_id, last, block_ms=poll_ms):
            out(event_line(ev))
            last = ev.id


def runs_json(runs: list[RunRecord]) -> list[dict[str, Any]]:
    return [r.to_json() for r in runs]
