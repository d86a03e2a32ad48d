"""``kubeboot submit cluster`` and ``submit batch``, and ``status`` / ``resume`` of cluster and batch runs.

Imports only click and ``cli_common`` at load time (see ``workers.cli``). A Cluster or Batch document
that does not validate is one line on stderr and exit 2, before anything is recorded or sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kubeboot.workers.cli_common import BAD_INPUT, OUTPUTS, fail, positive_duration, services
from kubeboot.workers.parent_commands import engine, show

if TYPE_CHECKING:
    from kubeboot.workers.services import Services

TIMEOUT = click.option("--timeout", callback=positive_duration, metavar="DURATION",
                       help="With --wait/--watch: stop following after DURATION (90s, 10m, ...); exit 1 if the run "
                            "is still going then.")
DRY_RUN = click.option("--dry-run", is_flag=True,
                       help="Change nothing: node files go to a temporary root per node (on the control worker, "
                            "queue dry-run), API writes are printed, not sent.")


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
