"""Which task names a worker runs: kubeboot's own, and on a node worker only the node's own phases.

A Celery worker runs any registered task a message names, Celery's built-ins included: ``celery.starmap``
and ``celery.chunks`` call any task function in-process with arguments from the message,
``celery.accumulate`` and ``celery.backend_cleanup`` are there whatever the app uses. Anyone who can
push onto a node's queue could so run code paths no kubeboot chain ever sends there. Here the
consumer's table of task handlers (its *strategies*) is cut down to an allow-list once it is built:
a message naming anything else is rejected unrun by Celery itself (``Received unregistered task of type
...``, FAILURE with ``NotRegistered`` in Flower). The tasks stay registered in the app: a node worker
forwarding a chain to ``control`` still needs the next link's task type to send it.

| role    | runs                                                                                  |
|---------|---------------------------------------------------------------------------------------|
| node    | ``kubeboot.*`` tasks that are not control tasks: the node-target phases (and tasks a   |
|         | ``--include``d module adds under ``kubeboot.``); never the finish, cluster or batch   |
|         | tasks, control-target phases or ``celery.*``                                          |
| control | every ``kubeboot.*`` task (control phases, a dry run's node phases, finish, parents)  |
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

log = logging.getLogger("kubeboot.worker")
_ROLE: list[str] = []


def allowed(task: Any, role: str) -> bool:
    from kubeboot.workflows.cluster_runs import ADVANCE_TASK, READY_TASK
    from kubeboot.workflows.parent_tasks import BATCH_ADVANCE
    from kubeboot.workflows.runs import FINISH_TASK

    name = str(getattr(task, "name", "") or "")
    if not name.startswith("kubeboot."):
        return False
    if role == "control":
        return True
    return getattr(task, "phase_target", "node") == "node" and name not in (
        FINISH_TASK, ADVANCE_TASK, READY_TASK, BATCH_ADVANCE)


class AllowList(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs right after the consumer built its strategies (``Tasks``), before it consumes."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c: Any) -> None:
        role = _ROLE[0] if _ROLE else "control"
        dropped = sorted(n for n in list(c.strategies) if not allowed(c.app.tasks.get(n), role))
        for name in dropped:
            del c.strategies[name]
        log.info("[worker] %s worker: %d task names refused (%s)", role, len(dropped), ", ".join(dropped))


def install(app: Any, role: str) -> None:
    _ROLE[:] = [role]
    if AllowList not in app.steps["consumer"]:
        app.steps["consumer"].add(AllowList)
