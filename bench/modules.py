"""Which modules a worker's processes hold, read from inside them: ``kubeboot worker ... --include
bench.modules`` with ``KUBEBOOT_BENCH_MODULES_DIR`` set.

Each process writes ``<dir>/<pid>.json`` (``modules``: the sorted names in its ``sys.modules``;
``gc_frozen``: how many objects ``gc.freeze()`` moved out of its collector's reach) when it is ready to
work and after every task: the main process on ``worker_ready`` (its pool is forked by then), each pool
child on ``worker_process_init`` (right after the fork) and ``task_postrun``. A name imported later
inside a task shows up after that task. Used by bench.worker_memory and by the integration test that
proves a node worker never imports the ``kubernetes`` client.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

from celery import signals

ENV = "KUBEBOOT_BENCH_MODULES_DIR"


def _write(**_kw: Any) -> None:
    where = os.environ.get(ENV)
    if not where:
        return
    directory = Path(where)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"modules": sorted(sys.modules), "gc_frozen": gc.get_freeze_count()}))
    tmp.replace(directory / f"{os.getpid()}.json")  # a reader never sees half a list


signals.worker_ready.connect(_write, weak=False)
signals.worker_process_init.connect(_write, weak=False)
signals.task_postrun.connect(_write, weak=False)


def report_of(directory: Path, pid: int) -> dict[str, Any] | None:
    """What ``pid`` last wrote, or None when it wrote nothing."""
    try:
        return dict(json.loads((directory / f"{pid}.json").read_text()))
    except (OSError, ValueError):
        return None


def modules_of(directory: Path, pid: int) -> list[str] | None:
    """The module names ``pid`` last wrote, or None when it wrote nothing."""
    report = report_of(directory, pid)
    return None if report is None else list(report["modules"])


def ask(directory: Path, pid: int, top: str = "kubernetes") -> bool | None:
    """Whether ``pid`` holds package ``top`` (None: the process wrote nothing)."""
    names = modules_of(directory, pid)
    return None if names is None else any(n == top or n.startswith(top + ".") for n in names)
