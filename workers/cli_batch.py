"""``kubeboot submit cluster`` and ``submit batch``, and ``status`` / ``resume`` of cluster and batch runs.

Imports only click and ``cli_common`` at load time (see ``workers.cli``). A Cluster or Batch document
that does not validate is one line on stderr and exit 2, before anything is recorded or sent.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from kubeboot.workers.cli_common import BAD_INPUT, FAILED, OUTPUTS, fail, positive_duration, services

if TYPE_CHECKING:
    from kubeboot.tasks.state import RunRecord
    from kubeboot.workers.services import Services
    from kubeboot.workflows.cluster_runs import Engine

FINAL = ("succeeded", "failed")
TIMEOUT = click.option("--timeout", callback=positive_duration, metavar="DURATION",
                       help="With --wait/--watch: stop following after DURATION (90s, 10m, ...); exit 1 if the run "
                            "is still going then.")
DRY_RUN = click.option("--dry-run", is_flag=True,
                       help="Change nothing: node files go to a temporary root per node (on the control worker, "
                            "queue dry-run), API writes are printed, not sent.")


def engine(svc: Services) -> Engine:
    from kubeboot.workflows.cluster_runs import Engine

    return Engine(svc.app(), svc.redis, svc.store, svc.settings)


def dry_run_dir(svc: Services, run_id: str) -> str:
    from kubeboot.tasks.dryrun import DRY_RUN_DIR

    return str(svc.settings.state_dir / DRY_RUN_DIR / run_id)


@click.command("cluster")
@click.option("-f", "--file", "file", required=True, type=click.Path(dir_okay=False),
              help="A Cluster document (kubeboot.dev/v1alpha1).")
@DRY_RUN
@click.option("--wait", is_flag=True, help="Follow the cluster live until it ends; exit 1 if it failed.")
@TIMEOUT
@click.option("-o", "--output", type=OUTPUTS, default="text", show_default=True)
def submit_cluster(file: str, dry_run: bool, wait: bool, timeout: float | None, output: str) -> None:
    """Bootstrap a whole cluster: init of its first control-plane node, the other control-plane nodes
    joined one at a time, then the workers in parallel."""
    from kubeboot.config.cluster import load_cluster
    from kubeboot.config.errors import ConfigError
    from kubeboot.workflows.cluster_plan import ClusterRunSpec
    from kubeboot.workflows.cluster_runs import submit_cluster as submit

    try:
        cluster = load_cluster(file)
    except ConfigError as e:
        fail(str(e), BAD_INPUT)
    svc = services()
    run = submit(engine(svc), ClusterRunSpec(cluster, dry_run))
    if output == "text":
        queues = ", ".join(sorted({f"node.{n.worker}" for n in cluster.nodes})) if not dry_run else "dry-run"
        click.echo(f"[submit] cluster run {run.id}: cluster {cluster.name}, {len(cluster.control_planes)} "
                   f"control-plane and {len(cluster.workers)} worker nodes (queues {queues})")
        if dry_run:
            click.echo(f"[dryrun] node files go to {dry_run_dir(svc, run.id)}/nodes/<node> on the control worker")
        click.echo(f"[submit] follow it: kubeboot status {run.id} --watch    Flower: {svc.flower_url(run.id)}")
    if wait or output == "json":
        show(svc, run.id, wait, output, timeout)


@click.command("batch")
@click.option("-f", "--file", "file", required=True, type=click.Path(dir_okay=False),
              help="A Batch document (kubeboot.dev/v1alpha1): a list of Clusters, or a template and a count.")
@click.option("--concurrency", type=click.IntRange(min=1), help="Clusters running at once (default: the "
              "document's spec.concurrency, else 4).")
@DRY_RUN
@click.option("--wait", is_flag=True, help="Follow the batch live until it ends; exit 1 if a cluster failed.")
@TIMEOUT
@click.option("-o", "--output", type=OUTPUTS, default="text", show_default=True)
def submit_batch(file: str, concurrency: int | None, dry_run: bool, wait: bool, timeout: float | None,
                 output: str) -> None:
    """Bootstrap many clusters side by side, at most --concurrency at once; a failed cluster never stops
    the others. Resume the ones that failed with `kubeboot resume BATCH`."""
    from kubeboot.config.batch import load_batch
    from kubeboot.config.errors import ConfigError
    from kubeboot.workflows.batch_runs import submit_batch as submit

    try:
        batch = load_batch(file)
    except ConfigError as e:
        fail(str(e), BAD_INPUT)
    svc = services()
    bound = concurrency or batch.concurrency
    run = submit(engine(svc), batch, concurrency=bound, dry_run=dry_run)
    if output == "text":
        click.echo(f"[submit] batch {run.id}: {len(batch.clusters)} clusters of {batch.name}, {bound} at a time"
                   f"{' (dry run: queue dry-run)' if dry_run else ''}")
        if dry_run:
            click.echo(f"[dryrun] node files go to {dry_run_dir(svc, run.id)}.<cluster>/nodes/<node> on the "
                       "control worker")
        click.echo(f"[submit] follow it: kubeboot status {run.id} --watch    Flower: {svc.flower_url(run.id)}")
    if wait or output == "json":
        show(svc, run.id, wait, output, timeout)


# --- status and resume of parent runs (dispatched from `kubeboot status` / `resume`) ----------------------

def is_parent(svc: Services, run_id: str) -> bool:
    run = svc.store.get_run(run_id)
    return run is not None and run.kind in ("cluster", "batch")


def _concurrency(svc: Services, run: RunRecord) -> int:
    from kubeboot.workflows.batch_runs import batch_spec

    return batch_spec(engine(svc), run.id).concurrency


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
