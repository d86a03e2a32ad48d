"""Queue names and routing, computed here and nowhere else.

- ``control``: API work (the control worker).
- ``node.<worker-id>``: node-local work of one machine; a node worker consumes only its own queue.
- ``dry-run``: every task of a dry run (the control worker consumes it too).
A node's worker id defaults to its node name (``nodeRegistration.name``); a Cluster document may name
another, which the run records in its route (``run_route``, ``RunRecord.route``).
Queues are declared explicitly; Celery's missing-queue auto-creation is off, so a task routed to a
queue nobody declared fails at submit time instead of waiting forever.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

CONTROL_QUEUE: Final = "control"
NODE_QUEUE_PREFIX: Final = "node."
# Every task of a dry run (node phases into a temporary root per (run, node), API calls faked): the
# control worker consumes it, so a dry run needs no machine and no node worker of its own.
DRY_RUN_QUEUE: Final = "dry-run"


def node_queue(worker_id: str) -> str:
    return f"{NODE_QUEUE_PREFIX}{worker_id}"


def queue_for(target: str, worker_id: str) -> str:
    """The queue of a phase with ``target`` ("node" or "control") for the node served by ``worker_id``."""
    if target == "control":
        return CONTROL_QUEUE
    if target == "node":
        return node_queue(worker_id)
    raise ValueError(f"unknown phase target {target!r}")


def is_routed_queue(name: str) -> bool:
    """True for every queue this routing can produce: ``control`` and ``node.<worker-id>``.

    Node queues cannot all be declared up front (a worker id is a node name, known only from the
    runs), so the family is declared instead: any worker may forward a chain to ``node.<id>``, and
    nothing outside the family is ever created."""
    if name in (CONTROL_QUEUE, DRY_RUN_QUEUE):
        return True
    worker_id = name.removeprefix(NODE_QUEUE_PREFIX)
    return name.startswith(NODE_QUEUE_PREFIX) and bool(_WORKER_ID.fullmatch(worker_id))


_WORKER_ID = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def run_route(workers: Mapping[str, str], *, dry_run: bool = False) -> dict[str, Any]:
    """The route a run records (``RunRecord.route``): each node's queue from its worker id, and the
    control queue; a dry run sends everything to ``dry-run``."""
    if dry_run:
        return {"nodes": dict.fromkeys(workers, DRY_RUN_QUEUE), "control": DRY_RUN_QUEUE, "dryRun": True}
    return {"nodes": {node: node_queue(worker) for node, worker in workers.items()}, "control": CONTROL_QUEUE}


def routed_queue(route: Mapping[str, Any], target: str, node: str) -> str:
    """The queue of a phase of a run with ``route`` (empty: the default, worker id = node name)."""
    if not route:
        return queue_for(target, node)
    if target == "control":
        return str(route.get("control") or CONTROL_QUEUE)
    if target != "node":
        raise ValueError(f"unknown phase target {target!r}")
    return str((route.get("nodes") or {}).get(node) or node_queue(node))
