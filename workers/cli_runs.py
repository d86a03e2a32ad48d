"""``kubeboot submit | status | runs | resume``: runs on the workers, followed through the run state.

Imports only click at load time (see ``workers.cli``); exit codes and helpers in ``workers.cli_common``.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from kubeboot.workers.cli_common import BAD_INPUT, FAILED, OUTPUTS, fail, positive_duration, services, split_csv

if TYPE_CHECKING:
    from kubeboot.workers.services import Services


TIMEOUT = click.option("--timeout", callback=positive_duration, metavar="DURATION",
                       help="With --wait/--watch: stop following after DURATION (90s, 10m, ...); "
                            "exit 1 if the run is still going then.")


def _finish(svc: Services, run_id: str, wait: bool, output: str, *, join: str = "no",
            timeout: float | None = None) -> None:
    """Follow the run to its end when ``wait`` (at most ``timeout`` seconds); print the final view;
    exit 1 if it failed or is still going when the timeout ends.

    ``join``: "no" never prints the join commands; "if-any" prints them when the run has them;
    "required" also exits 1 when it has none. They come from the run's encrypted secrets and hold a
    token and the certificate key: printed only to the person who asked, as kubeadm prints them.
    """
    import time

    from kubeboot.workers.progress import FINAL, join_commands, render_table, status_json, watch
    from kubeboot.workflows.liveness import waiting_on

    status = svc.store.run_status(run_id)
    if wait:
        deadline = None if timeout is None else time.monotonic() + timeout
        status = watch(svc.store, run_id, click.echo if output == "text" else (lambda _: None), deadline=deadline)
    run = svc.store.get_run(run_id)
    assert run is not None
    phases = svc.store.phase_records(run_id)
    flower = svc.flower_url(run_id)
    waiting = waiting_on(svc.redis, run, phases)
    secret = svc.store.get_secret(run_id, "join-command") if join != "no" else None
    text = secret.decode() if secret else ""
    if output == "json":
        click.echo(status_json(run, phases, flower, join_commands(text) if join != "no" else None, waiting=waiting))
    else:
        click.echo(render_table(run, phases, flower, waiting=waiting))
    if status == "failed":
        sys.exit(FAILED)
    if wait and status not in FINAL:
        from kubeboot.config.duration import format_duration

        fail(f"run {run_id} is still {status} after {format_duration(timeout or 0)}: it goes on without this "
             f"command; follow it with `kubeboot status {run_id} --watch`", FAILED)
    if text and output == "text":
        click.echo("\n" + text)
    if join == "required" and not text:
        fail(f"run {run_id} has no join command: show-join-command has not run, or the run's secrets "
             "expired (KUBEBOOT_SECRET_TTL after it ended)", FAILED)


@click.group("submit")
def submit_group() -> None:
    """Submit a run to the workers (needs a running control worker and the node's worker)."""


@submit_group.command("init")
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False), help="kubeadm config file.")
@click.option("--skip-phases", multiple=True, metavar="PATH[,PATH]", help="Phases to skip (kubeadm paths).")
@click.option("--upload-certs", is_flag=True,
              help="Upload the control-plane certificates to the kubeadm-certs Secret (for control-plane joins).")
@click.option("--dry-run", is_flag=True, help="Change nothing: node files go to a temporary root (on the control "
              "worker, queue dry-run), API writes are printed, not sent.")
@click.option("--wait", is_flag=True, help="Follow the run live until it ends; exit 1 if it failed.")
@TIMEOUT
@click.option("-o", "--output", type=OUTPUTS, default="text", show_default=True)
def submit_init(config_file: str, skip_phases: tuple[str, ...], upload_certs: bool, dry_run: bool, wait: bool,
                timeout: float | None, output: str) -> None:
    """Bootstrap the first control-plane node of the cluster in FILE (its worker: node.<name>)."""
    from kubeboot.config.errors import ConfigError
    from kubeboot.config.loader import load_init_config
    from kubeboot.workflows.runs import RunRefusedError, submit_init
    from kubeboot.workflows.selection import UnknownPhaseError

    skip = split_csv(skip_phases)
    try:
        cfg = load_init_config(config_file)
        if dry_run:
            cfg.init.dryRun = True
        from kubeboot.workflows.local import plan_init

        plan_init(cfg, "all", skip)  # bad phase paths are bad input, before anything is recorded
    except (ConfigError, UnknownPhaseError) as e:
        fail(str(e), BAD_INPUT)
    svc = services()
    app = svc.app()
    try:
        sub = submit_init(app, svc.redis, svc.store, svc.settings, cfg, skip=skip, upload_certs=upload_certs)
    except RunRefusedError as e:
        fail(str(e), FAILED)
    if output == "text":
        click.echo(f"[submit] run {sub.run.id}: init of cluster {sub.run.cluster}, node {cfg.node_name} "
                   f"(queues {', '.join(sub.queues)})")
        if cfg.init.dryRun:
            from kubeboot.tasks.dryrun import DRY_RUN_DIR

            click.echo(f"[dryrun] node files go to {svc.settings.state_dir / DRY_RUN_DIR / sub.run.id}/nodes/"
                       f"{cfg.node_name} on the control worker")
        click.echo(f"[submit] follow it: kubeboot status {sub.run.id} --watch    Flower: {svc.flower_url(sub.run.id)}")
    if wait or output == "json":
        _finish(svc, sub.run.id, wait, output, join="if-any" if wait and output == "text" else "no", timeout=timeout)


@click.command("status")
@click.argument("run_id", metavar="RUN")
@click.option("--watch", is_flag=True, help="Print events live until the run ends.")
@TIMEOUT
@click.option("--show-join-command", "show_join", is_flag=True,
              help="Also print the join commands (they hold a bootstrap token and the certificate key; "
                   "-o json: a joinCommands field). Exit 1 if the run has none.")
@click.option("-o", "--output", type=OUTPUTS, default="text", show_default=True)
def status(run_id: str, watch: bool, timeout: float | None, show_join: bool, output: str) -> None:
    """Show a run: per node and phase, status, attempts, time and last error."""
    from kubeboot.workers.parent_commands import is_parent, show

    svc = services()
    if svc.store.get_run(run_id) is None:
        fail(f"no run {run_id}; list runs with `kubeboot runs`", BAD_INPUT)
    if is_parent(svc, run_id):  # a cluster or a batch: one row per node or per cluster
        show(svc, run_id, watch, output, timeout)
        return
    _finish(svc, run_id, watch, output, join="required" if show_join else "no", timeout=timeout)


@click.group("runs", invoke_without_command=True)
@click.option("--cluster", help="Only the runs of this cluster (its cluster runs and their children).")
@click.option("--batch", help="Only the runs of this batch (the batch, its cluster runs and their children).")
@click.option("--status", type=click.Choice(["pending", "running", "succeeded", "failed"]),
              help="Only runs in this status.")
@click.option("--kind", type=click.Choice(["init", "join", "cluster", "batch"]), help="Only runs of this kind.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Runs per page.")
@click.option("--after", metavar="RUN", help="The page after this run (the last run of the previous page).")
@click.option("-o", "--output", type=OUTPUTS, default="text", show_default=True)
@click.pass_context
def runs(ctx: click.Context, cluster: str | None, batch: str | None, status: str | None, kind: str | None,
         limit: int, after: str | None, output: str) -> None:
    """List runs, newest first, a page at a time (`runs prune` deletes old ones)."""
    if ctx.invoked_subcommand is not None:
        return
    from kubeboot.tasks.state.index import BadCursorError, RunFilter, query
    from kubeboot.workers.progress import runs_json

    svc = services()
    try:
        page = query(svc.redis, RunFilter(cluster=cluster, batch=batch, status=status, kind=kind), limit=limit,
                     after=after)
    except BadCursorError as e:
        fail(str(e), BAD_INPUT)
    if output == "json":
        click.echo(json.dumps(runs_json(page.runs), indent=2))
        return
    click.echo(f"{'RUN':<28} {'KIND':<8} {'CLUSTER':<20} {'STATUS':<10} CREATED")
    for r in page.runs:
        click.echo(f"{r.id:<28} {r.kind:<8} {r.cluster:<20} {r.status:<10} {r.created}")
    if page.next:
        click.echo(f"(more: the same command with --after {page.next})")


@runs.command("prune")
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="Delete finished runs that ended longer ago than AGE (30d, 12h, 90m).")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
def runs_prune(older_than: str, dry_run: bool) -> None:
    """Delete finished runs (record, phases, events, secrets, index entries) older than AGE."""
    from datetime import UTC, datetime, timedelta

    from kubeboot.tasks.state.index import prune

    seconds = _age(older_than)
    svc = services()
    doomed = prune(svc.redis, datetime.now(UTC) - timedelta(seconds=seconds), dry_run=dry_run)
    click.echo(f"[prune] {'would delete' if dry_run else 'deleted'} {len(doomed)} runs that ended more than "
               f"{older_than} ago")


def _age(text: str) -> float:
    """A Go duration, or whole days as ``30d``."""
    from kubeboot.config.duration import parse_duration

    try:
        seconds = float(text[:-1]) * 86400 if text.endswith("d") else parse_duration(text)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        fail(f"--older-than: {text!r} is not an age (e.g. 30d, 12h, 90m)", BAD_INPUT)
    return seconds


@click.command("resume")
@click.argument("run_id", metavar="RUN")
@click.option("--wait", is_flag=True, help="Follow the run live until it ends; exit 1 if it failed.")
@TIMEOUT
@click.option("-o", "--output", type=OUTPUTS, default="text", show_default=True)
def resume(run_id: str, wait: bool, timeout: float | None, output: str) -> None:
    """Continue a failed run from where it stopped: only phases not yet succeeded run again."""
    from kubeboot.workers.parent_commands import is_parent, resume_parent
    from kubeboot.workflows.runs import RunRefusedError
    from kubeboot.workflows.runs import resume as resume_run

    svc = services()
    if is_parent(svc, run_id):  # a cluster or a batch resumes what did not finish
        resume_parent(svc, run_id, wait, output, timeout)
        return
    try:
        run = resume_run(svc.app(), svc.redis, svc.store, svc.settings, run_id)
    except RunRefusedError as e:
        fail(str(e), FAILED)
    if output == "text":
        click.echo(f"[resume] run {run.id} is {run.status}")
    _finish(svc, run_id, wait, output, join="if-any" if wait and output == "text" else "no", timeout=timeout)
