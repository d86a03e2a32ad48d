"""What a worker's processes hold, read from inside real workers (``--include bench.modules``: each
process writes its ``sys.modules`` and ``gc.get_freeze_count()`` when ready and after every task).

- A node worker that writes files and drives the kubelet (an init's node-local phases, preflight to
  kubelet-start) never imports the ``kubernetes`` client, in its main process or its pool child.
- Each role loads what it needs before the pool forks, and only that: the control worker's children
  start with the client (shared pages, no import inside a phase); no worker process holds Celery's
  command-line plugins (Flower, tornado, prompt_toolkit); every child starts with the parent's objects
  frozen out of its garbage collector's reach. The memory figures themselves are bench.worker_memory's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]  # where bench/ lives (not an installed package)
CELERY_CLI = ("celery.bin.celery", "flower", "tornado", "prompt_toolkit", "click_repl")


def holds(modules: list[str], top: str) -> bool:
    return any(m == top or m.startswith(top + ".") for m in modules)


class Probe:
    """The reports of one engine's workers, by pid."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.dir = engine.dir / "modules"
        engine.env["KUBEBOOT_BENCH_MODULES_DIR"] = str(self.dir)
        engine.env["PYTHONPATH"] = str(PROJECT)

    def start(self, name: str, *args: str) -> None:
        self.engine.spawn(name, "worker", *args, "--include", "bench.modules")

    def report(self, pid: int) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.dir / f"{pid}.json").read_text()))
        except (OSError, ValueError):
            return None

    def reports(self, name: str, processes: int) -> dict[int, dict[str, Any]]:
        """Once the worker ``name`` runs ``processes`` processes and each has written its report."""
        found: dict[int, dict[str, Any]] = {}

        def ready() -> bool:
            found.clear()
            for pid in self.engine.group(name):
                report = self.report(pid)
                if report is not None:
                    found[pid] = report
            return len(self.engine.group(name)) == processes and len(found) == processes

        self.engine.wait_for(f"{processes} processes of the {name} worker to report their modules", ready)
        return dict(found)

    def main_pid(self, name: str) -> int:
        return int(self.engine.procs[name].pid)


def test_a_node_worker_running_the_node_local_phases_never_imports_the_kubernetes_client(engine: Any) -> None:
    probe = Probe(engine)
    engine.start_redis()
    probe.start("node", "node", "--id", "cp1", "--root", str(engine.root))
    probe.start("control", "control", "--concurrency", "1")
    before = probe.reports("node", 2)
    child = next(pid for pid in before if pid != probe.main_pid("node"))
    written = (probe.dir / f"{child}.json").stat().st_mtime_ns

    run = engine.submit(engine.config())
    assert engine.wait_run(run) == "succeeded", engine.logs()
    assert engine.phase(run, "kubelet-start").status == "succeeded"
    # The child rewrites its report after each task: wait for the one written after the phases ran.
    engine.wait_for("the node worker's child to report after its tasks",
                    lambda: (probe.dir / f"{child}.json").stat().st_mtime_ns > written)

    after = probe.reports("node", 2)
    assert set(after) == set(before)  # the same main process and child did the work
    for pid, report in after.items():
        assert holds(report["modules"], "kubeboot.tasks.phases.kubeletstart"), pid  # the probe sees the phases
        assert not holds(report["modules"], "kubernetes"), (
            f"node worker process {pid} imported the kubernetes client: "
            f"{[m for m in report['modules'] if m.startswith('kubernetes')][:5]}")


def test_each_role_loads_what_it_needs_before_the_fork_and_nothing_of_celerys_command_line(engine: Any) -> None:
    probe = Probe(engine)
    engine.start_redis()
    probe.start("node", "node", "--id", "cp1", "--root", str(engine.root))
    probe.start("control", "control", "--concurrency", "2")
    node = probe.reports("node", 2)  # concurrency 1: the main process and one pool child
    control = probe.reports("control", 3)

    for name, reports in (("node", node), ("control", control)):
        for pid, report in reports.items():
            loaded = [top for top in CELERY_CLI if holds(report["modules"], top)]
            assert loaded == [], f"{name} worker process {pid} holds {loaded}"
            if pid != probe.main_pid(name):
                assert report["gc_frozen"] > 0, f"{name} worker child {pid} started with nothing frozen"
    for pid, report in control.items():
        assert holds(report["modules"], "kubernetes.client"), f"control worker process {pid} lacks the client"
    for pid, report in node.items():
        assert not holds(report["modules"], "kubernetes"), f"idle node worker process {pid} holds the client"
