"""Following a cluster run (``submit cluster --wait``): the cluster's events and its children's, printed in
the order Redis recorded them across streams, a child found in a look read in that same look."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from kubeboot.tasks.state.records import Event
from kubeboot.workers.batch_view import follow

CLUSTER = "c-1"


def ev(entry_id: str, node: str, phase: str, event: str) -> Event:
    return Event(id=entry_id, ts="2026-01-01T00:00:00.000000+00:00", node=node, phase=phase, event=event, attempt=1,
                 message="")


@dataclass
class Store:
    """Streams as lists of events; the run ends after ``looks`` looks."""

    streams: dict[str, list[Event]]
    looks: int = 1

    def get_run(self, run_id: str) -> Any:
        return SimpleNamespace(kind="cluster") if run_id == CLUSTER else None

    def run_status(self, run_id: str) -> str:
        self.looks -= 1
        return "succeeded" if self.looks < 0 else "running"

    def events(self, run_id: str, since: str = "0") -> list[Event]:
        return [e for e in self.streams.get(run_id, []) if since == "0" or _key(e.id) > _key(since)]


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def test_events_of_the_cluster_and_its_children_print_in_redis_order_in_one_look() -> None:
    store = Store({
        CLUSTER: [ev("100-0", "", "", "submitted"), ev("101-0", "cp1", "init", "started"),
                  ev("300-0", "w1", "join", "started")],
        f"{CLUSTER}.cp1": [ev("102-0", "cp1", "preflight", "started"), ev("250-0", "cp1", "certs", "started")],
        f"{CLUSTER}.w1": [ev("301-0", "w1", "preflight", "started")],
    }, looks=0)
    lines: list[str] = []
    assert follow(store, CLUSTER, lines.append) == "succeeded"  # type: ignore[arg-type]
    order = [line.split("  ", 1)[1] for line in lines]
    assert order == [
        "run submitted",
        "[cp1] init started",
        f"[cp1] preflight started  ({CLUSTER}.cp1)",
        f"[cp1] certs started  ({CLUSTER}.cp1)",
        "[w1] join started",
        f"[w1] preflight started  ({CLUSTER}.w1)",
    ]


def test_a_later_look_prints_only_what_each_stream_gained() -> None:
    streams = {CLUSTER: [ev("100-0", "cp1", "init", "started")], f"{CLUSTER}.cp1": [ev("101-0", "cp1", "a", "started")]}
    store = Store(streams, looks=1)
    lines: list[str] = []

    def out(line: str) -> None:
        lines.append(line)
        if len(lines) == 2:  # between the looks, the child and the cluster move on
            streams[f"{CLUSTER}.cp1"].append(ev("103-0", "cp1", "a", "succeeded"))
            streams[CLUSTER].append(ev("104-0", "", "", "succeeded"))

    follow(store, CLUSTER, out, every=3600)  # type: ignore[arg-type]
    assert [line.split("  ", 1)[1] for line in lines] == [
        "[cp1] init started", f"[cp1] a started  ({CLUSTER}.cp1)", f"[cp1] a succeeded  ({CLUSTER}.cp1)",
        "run succeeded"]
