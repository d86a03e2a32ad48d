"""``kubeboot sandbox up|status|down``: try kubeboot on simulated machines, like kind for kubeadm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kubeboot.workers.cli_common import BAD_INPUT, FAILED, OUTPUTS, fail, services

if TYPE_CHECKING:
    from kubeboot.workers.sandbox_env import SandboxEnv


def _env() -> tuple[Path, SandboxEnv]:
    from kubeboot.workers.sandbox_env import SandboxEnv

    svc = services()
    directory = svc.settings.state_dir / "sandbox"
    return directory, SandboxEnv(directory, click.echo)


@click.group("sandbox")
def sandbox_group() -> None:
    """Simulated machines on this host: own loopback address, node root, node worker and sandbox kubelet."""


@sandbox_group.command("up")
@click.option("--nodes", default=1, show_default=True, help="Nodes per cluster (the first is its control plane).")
@click.option("--clusters", default=1, show_default=True, help="Clusters side by side.")
@click.option("--kubernetes-version", default=None, help="kubernetesVersion of the clusters (default: kubeboot's).")
def up(nodes: int, clusters: int, kubernetes_version: str | None) -> None:
    """Start the embedded Redis, a control worker, and per node a node worker and a sandbox kubelet."""
    if nodes < 1 or clusters < 1:
        fail("--nodes and --clusters must be at least 1", BAD_INPUT)
    directory, env = _env()
    try:
        box = env.up(clusters, nodes, kubernetes_version)
    except RuntimeError as e:
        fail(str(e), FAILED)
    click.echo(f"[sandbox] up in {directory}")
    click.echo(f"{'NODE':<14} {'ADDRESS':<14} {'QUEUE':<20} ROOT")
    for n in box.nodes:
        click.echo(f"{n.name:<14} {n.address:<14} {n.queue:<20} {n.root}")
    for cluster, config in box.clusters.items():
        click.echo(f"[sandbox] bootstrap {cluster}: kubeboot submit init --config {config} --wait")


@sandbox_group.command("status")
@click.option("-o", "--output", type=OUTPUTS, default="text", show_default=True)
def status(output: str) -> None:
    """Show the sandbox's nodes, their addresses and queues, and whether their processes run."""
    _, env = _env()
    rows = env.status()
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("[sandbox] no sandbox is up")
        return
    click.echo(f"{'NODE':<14} {'ADDRESS':<14} {'QUEUE':<20} {'WORKER':<8} {'KUBELET':<8} PODS")
    for r in rows:
        pods = ", ".join(_pod(p) for p in r["pods"].get("pods", []))
        click.echo(f"{r['node']:<14} {r['address']:<14} {r['queue']:<20} {'up' if r['worker'] else 'down':<8} "
                   f"{'up' if r['kubelet'] else 'down':<8} {pods}")


def _pod(pod: dict[str, object]) -> str:
    state = "ready" if pod.get("ready") else "starting"
    return f"{pod['container']}({state}, {pod.get('restarts', 0)} restarts)"


@sandbox_group.command("down")
def down() -> None:
    """Stop every sandbox process (workers, kubelets and their static pods) and the embedded Redis."""
    from kubeboot.config.settings import Settings
    from kubeboot.workers.redis_server import EmbeddedRedis

    _, env = _env()
    left = env.down()
    settings = Settings.from_env()
    if not settings.redis_url:
        EmbeddedRedis(settings.state_dir).stop()
    if left:
        fail(f"processes still alive: {left}", FAILED)
    click.echo("[sandbox] down: no process left")
