"""Registers one Celery task per phase of every workflow tree, named ``kubeboot.<workflow>.<path>``.

The names are stable strings derived from the phase paths, independent of module names, so a
worker and a submitter of the same kubeboot version always agree on them.
"""

from __future__ import annotations

from functools import cache

from kubeboot.workflows.init_tree import INIT_PHASES
from kubeboot.workflows.join_tree import JOIN_PHASES
from kubeboot.workflows.phase import walk

WORKFLOWS = {"init": INIT_PHASES, "join": JOIN_PHASES}


@cache
def register_all() -> list[str]:
    """Register every phase task (once per process); returns the task names."""
    from kubeboot.tasks.phasetask import register_phase_task

    names: list[str] = []
    for workflow, roots in WORKFLOWS.items():
        for placed in walk(roots, workflow):
            if placed.phase.action is None:
                continue
            register_phase_task(name=placed.task_name, path=placed.path, action=placed.phase.action,
                                args=placed.phase.args, target=placed.phase.target,
                                max_attempts=placed.phase.max_attempts)
            names.append(placed.task_name)
    return names
