"""Status and resume of cluster and batch runs, shared by ``kubeboot status`` / ``resume`` (``cli_runs``)
and ``submit cluster`` / ``submit batch`` (``cli_batch``): what to print, how to follow, exit codes.

Imports only click and ``cli_common`` at load time (see ``workers.cli``).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from kubeboot.workers.cli_common import FAILED, fail

if TYPE_CHECKING:
    from kubeboot.tasks.state import RunRecord
    from kubeboot.workers.services import Services
    from kubeboot.workflows.cluster_runs import Engine

FINAL = ("succeeded", "failed")
PARENT_KINDS = ("cluster", "batch")


def engine(svc: Services) -> Engine:
    from kubeboot.workflows.cluster_runs import Engine

    return Engine(svc.app(), svc.redis, svc.store, svc.settings)


def is_parent(svc: Services, run_id: str) -> bool:
    run = svc.store.get_run(run_id)
    return run is not None and run.kind in PARENT_KINDS


def _concurrency(svc: Services, run: RunRecord) -> int:
    """The batch's bound, a field of its run (read without decrypting the batch or building the app)."""
    from kubeboot.tasks.state.parents import Parents

    return int(Parents(svc.redis).fields(run.id, "concurrency")["concurrency"] or 1)


def render(svc: Services, run_id: str, output: str) -> str:
    from datetime import UTC, datetime

    from kubeboot.tasks.state.records import iso
    from kubeboot.workers import batch_view as view
    from kubeboot.workflows.parent_status import batch_view, cluster_rows

    run = svc.store.get_run(run_id)
    assert run is not None
    flower = svc.flower_url(run_id)
    if run.kind == "cluster":
        rows = cluster_rows(svc.store, run)
        return view.cluster_json(run, rows, flower) if output == "json" else view.cluster_table(run, rows, flower)
    batch = batch_view(svc.store, run, iso(datetime.now(UTC)), _concurrency(svc, run))
    return view.batch_json(batch, flower) if output == "json" else view.batch_table(batch, flower)


def show(svc: Services, run_id: str, wait: bool, output: str, timeout: float | None) -> None:
    """Follow (when ``wait``) then print the cluster or batch; exit 1 if it failed or is still going."""
    status = svc.store.run_status(run_id)
    if wait:
        status = _follow(svc, run_id, output, timeout)
    click.echo(render(svc, run_id, output))
    if status == "failed":
        sys.exit(FAILED)
    if wait and status not in FINAL:
        fail(f"run {run_id} is still {status}: it goes on without this command; follow it with "
             f"`kubeboot status {run_id} --watch`", FAILED)


def _follow(svc: Services, run_id: str, output: str, timeout: float | None) -> str:
    from datetime import UTC, datetime

    from kubeboot.tasks.state.records import iso
    from kubeboot.workers import batch_view as view
    from kubeboot.workflows.parent_status import batch_view

    run = svc.store.get_run(run_id)
    assert run is not None
    out: Any = click.echo if output == "text" else (lambda _: None)
    summary = None
    if run.kind == "batch":
        bound = _concurrency(svc, run)

        def summary() -> str:
            current = svc.store.get_run(run_id)
            assert current is not None
            return "[batch] " + view.batch_summary(batch_view(svc.store, current, iso(datetime.now(UTC)), bound))

    deadline = None if timeout is None else time.monotonic() + timeout
    return view.follow(svc.store, run_id, out, summary=summary, deadline=deadline)


def resume_parent(svc: Services, run_id: str, wait: bool, output: str, timeout: float | None) -> None:
    from kubeboot.workflows.batch_runs import resume_batch
    from kubeboot.workflows.cluster_runs import ClusterRefusedError, resume_cluster

    run = svc.store.get_run(run_id)
    assert run is not None
    try:
        resumed = (resume_batch if run.kind == "batch" else resume_cluster)(engine(svc), run_id)
    except ClusterRefusedError as e:
        fail(str(e), FAILED)
    if output == "text":
        click.echo(f"[resume] {run.kind} run {resumed.id} is {resumed.status}")
    show(svc, run_id, wait, output, timeout)
