"""``kubeboot sandbox up|status|down``: try kubeboot on simulated machines, like kind for kubeadm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
@click.option("--clusters", default=1, show_default=True, help="Clusters side by side (sb1, sb2, ...).")
@click.option("--control-planes", default=None, type=int,
              help="Control-plane nodes per cluster (<cluster>-cp1..K); more than one puts a load balancer "
                   "in front of them as the controlPlaneEndpoint.  [default: 1]")
@click.option("--workers", default=None, type=int, help="Worker nodes per cluster (<cluster>-w1..W).  [default: 0]")
@click.option("--nodes", default=None, type=int,
              help="Shorthand for one control-plane node and N-1 workers per cluster.")
@click.option("--kubernetes-version", default=None, help="kubernetesVersion of the clusters (default: kubeboot's).")
def up(clusters: int, control_planes: int | None, workers: int | None, nodes: int | None,
       kubernetes_version: str | None) -> None:
    """Start the embedded Redis, a control worker, per node a node worker and a sandbox kubelet, per
    cluster with several control planes a load balancer, and a supervisor that restarts what dies."""
    from kubeboot.sandbox.addresses import MAX_CLUSTERS, MAX_NODES

    if nodes is not None and (control_planes is not None or workers is not None):
        fail("--nodes is a shorthand for --control-planes 1 --workers N-1: give one or the other", BAD_INPUT)
    if nodes is not None:
        if nodes < 1:
            fail("--nodes must be at least 1", BAD_INPUT)
        control_planes, workers = 1, nodes - 1
    control_planes = 1 if control_planes is None else control_planes
    workers = 0 if workers is None else workers
    if control_planes < 1 or workers < 0 or clusters < 1:
        fail("--control-planes and --clusters must be at least 1, --workers at least 0", BAD_INPUT)
    if control_planes + workers > MAX_NODES or clusters > MAX_CLUSTERS:
        fail(f"at most {MAX_NODES} nodes per cluster and {MAX_CLUSTERS} clusters fit the sandbox's addresses",
             BAD_INPUT)
    directory, env = _env()
    try:
        box = env.up(clusters, control_planes, workers, kubernetes_version)
    except RuntimeError as e:
        fail(str(e), FAILED)
    click.echo(f"[sandbox] up in {directory}")
    click.echo(f"{'NODE':<14} {'ADDRESS':<14} {'QUEUE':<20} {'ROLE':<14} ROOT")
    for n in box.nodes:
        click.echo(f"{n.name:<14} {n.address:<14} {n.queue:<20} {n.role:<14} {n.root}")
    for cluster, config in box.clusters.items():
        if cluster in box.load_balancers:
            click.echo(f"[sandbox] {cluster}: load balancer on {box.endpoints[cluster]} (controlPlaneEndpoint)")
        click.echo(f"[sandbox] bootstrap {cluster}: kubeboot submit init --config {config} --wait")
        click.echo(f"[sandbox] bootstrap the whole of {cluster}: kubeboot submit cluster -f "
                   f"{box.cluster_docs[cluster]} --wait")
    click.echo(f"[sandbox] bootstrap every cluster: kubeboot submit batch -f {box.batch} --wait")


@sandbox_group.command("status")
@click.option("-o", "--output", type=OUTPUTS, default="text", show_default=True)
def status(output: str) -> None:
    """Show the clusters (endpoint, load balancer, API servers and etcd members up, leader of each Lease) and
    the nodes (role, address, queue, whether their worker and kubelet run, their pods)."""
    _, env = _env()
    doc = env.status()
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    if not doc:
        click.echo("[sandbox] no sandbox is up")
        return
    click.echo(f"[sandbox] supervisor {'up' if doc['supervisor']['up'] else 'down'} (pid {doc['supervisor']['pid']})")
    click.echo(f"{'CLUSTER':<8} {'ENDPOINT':<20} {'LOAD BALANCER':<16} {'API SERVERS':<40} ETCD MEMBERS")
    for c in doc["clusters"]:
        click.echo(f"{c['name']:<8} {c['endpoint']:<20} {_balancer(c['loadBalancer']):<16} "
                   f"{_up_list(c['apiServers'], 'node'):<40} {_up_list(c['etcdMembers'], 'name') or '-'}")
    click.echo(f"{'NODE':<14} {'ROLE':<14} {'ADDRESS':<14} {'QUEUE':<20} {'WORKER':<8} {'KUBELET':<8} PODS")
    for r in doc["nodes"]:
        pods = ", ".join(_pod(p) for p in r["pods"].get("pods", []))
        click.echo(f"{r['node']:<14} {r['role']:<14} {r['address']:<14} {r['queue']:<20} "
                   f"{'up' if r['worker'] else 'down':<8} {'up' if r['kubelet'] else 'down':<8} {pods}")
    for c in doc["clusters"]:
        if c.get("leaders"):
            click.echo(f"[sandbox] {c['name']}: leaders " + ", ".join(
                f"{lease} {holder.rsplit('_', 1)[0] or '-'}" for lease, holder in c["leaders"].items()))
    for c in doc["clusters"]:
        if c.get("document"):
            click.echo(f"[sandbox] {c['name']}: kubeboot submit cluster -f {c['document']}")
    if doc.get("batch"):
        click.echo(f"[sandbox] every cluster: kubeboot submit batch -f {doc['batch']}")


def _balancer(lb: dict[str, Any] | None) -> str:
    if lb is None:
        return "-"
    if not lb["up"]:
        return "down"
    return f"up ({sum(b['up'] for b in lb['backends'])}/{len(lb['backends'])} up)"


def _up_list(items: list[dict[str, Any]], key: str) -> str:
    return ", ".join(f"{i[key]} {'up' if i['up'] else 'down'}" for i in items)


def _pod(pod: dict[str, object]) -> str:
    state = "ready" if pod.get("ready") else "starting"
    return f"{pod['container']}({state}, {pod.get('restarts', 0)} restarts)"


@sandbox_group.command("down")
def down() -> None:
    """Stop the supervisor, then every sandbox process (workers, load balancers, kubelets and their static
    pods), and the embedded Redis."""
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
