"""The typed, read-only views of what ``tasks.state.store`` persists (schema: see that module).

Pure conversions between Redis replies and dataclasses: no Redis calls here. Works with clients in
either reply mode (bytes or ``decode_responses=True``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds and ``Z``, the one timestamp format of the store."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class RunRecord:
    id: str
    kind: str
    cluster: str
    spec_digest: str
    status: str
    created: str
    started: str | None
    finished: str | None
    error: str | None
    nodes: tuple[str, ...]
    plan: tuple[tuple[str, str], ...]
    # A child run's parent (a cluster run, or the batch of a cluster run) and the batch it belongs to.
    parent: str | None = None
    batch: str | None = None
    # Where the run's tasks go: {"nodes": {node: queue}, "control": queue}; empty: the default routing.
    route: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> RunRecord:
        return cls(
            id=h["id"], kind=h["kind"], cluster=h["cluster"], spec_digest=h["spec_digest"], status=h["status"],
            created=h["created"], started=h.get("started"), finished=h.get("finished"), error=h.get("error"),
            nodes=tuple(json.loads(h.get("nodes", "[]"))),
            plan=tuple((n, p) for n, p in json.loads(h.get("plan", "[]"))),
            parent=h.get("parent"), batch=h.get("batch"), route=json.loads(h.get("route") or "{}"),
        )

    @property
    def dry_run(self) -> bool:
        return bool(self.route.get("dryRun"))

    def to_json(self) -> dict[str, Any]:
        """The stable ``-o json`` shape of a run."""
        return {
            "id": self.id, "kind": self.kind, "cluster": self.cluster, "specDigest": self.spec_digest,
            "status": self.status, "created": self.created, "started": self.started, "finished": self.finished,
            "error": self.error, "nodes": list(self.nodes), "parent": self.parent, "batch": self.batch,
            "dryRun": self.dry_run,
        }


@dataclass(frozen=True)
class PhaseRecord:
    node: str
    path: str
    status: str
    attempts: int
    worker: str | None
    started: str | None
    finished: str | None
    delayed: str | None
    last_error: str | None
    # The lease deadline, epoch ms of Redis's clock (internal: not in ``to_json``).
    lease: int | None = None

    @classmethod
    def from_fields(cls, node: str, path: str, f: dict[str, str]) -> PhaseRecord:
        return cls(
            node=node, path=path, status=f.get("status", "pending"), attempts=int(f.get("attempts", "0")),
            worker=f.get("worker"), started=f.get("started"), finished=f.get("finished"),
            delayed=f.get("delayed"), last_error=f.get("last_error"),
            lease=int(float(f["lease"])) if f.get("lease") else None,
        )

    @property
    def duration(self) -> float | None:
        """Seconds of the last attempt, once it ended."""
        if not (self.started and self.finished):
            return None
        return (parse_iso(self.finished) - parse_iso(self.started)).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node, "phase": self.path, "status": self.status, "attempts": self.attempts,
            "worker": self.worker, "started": self.started, "finished": self.finished,
            "duration": self.duration, "delayed": self.delayed, "lastError": self.last_error,
        }


@dataclass(frozen=True)
class Event:
    id: str
    ts: str
    node: str
    phase: str
    event: str
    attempt: int
    message: str

    @property
    def is_run_event(self) -> bool:
        """Run-level entries (submitted, resumed, succeeded, failed) carry no node and no phase."""
        return not self.phase

    @classmethod
    def from_entry(cls, entry_id: Any, fields: Any) -> Event:
        f = {text(k): text(v) for k, v in fields.items()}
        return cls(
            id=text(entry_id), ts=f["ts"], node=f["node"], phase=f["phase"], event=f["event"],
            attempt=int(f.get("attempt", "0")), message=f.get("message", ""),
        )
