"""A cluster run's plan: which child run does what, in which order, and the kubeadm config of each.

Pure data over a ``Cluster`` document (no Redis, no Celery):

- the steps, one per node in order: ``(first control-plane node, "init")``, ``(each other control-plane
  node, "join")``, ``(each worker, "join")``;
- the stages: the init, then the control-plane joins one at a time (etcd admits one new member at a
  time), then every worker at once;
- the child run ids: ``<cluster run>.<node>``, and ``<cluster run>.<node>.certs`` for the re-upload of
  the control-plane certificates before a control-plane join when ``kubeadm-certs`` has expired;
- each child's route: its node's worker queue (``node.<workerId>``), or everything on ``dry-run``.

What a cluster run stores as its config (``ClusterRunSpec.to_config``): the Cluster document, whether
it is a dry run, and for a node added later (``submit join --cluster``) the cluster run whose token,
certificate key and CA pin it uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from kubeboot.config.cluster import Cluster, NodeSpec, build_cluster
from kubeboot.workflows.routing import run_route

INIT: Final = "init"
JOIN: Final = "join"


@dataclass(frozen=True)
class ClusterRunSpec:
    cluster: Cluster
    dry_run: bool = False
    base: str | None = None  # the cluster run whose secrets a node added later uses
    only: tuple[str, ...] = ()  # the nodes this run joins (a node added later); empty: the whole cluster

    def to_config(self) -> dict[str, Any]:
        return {"cluster": self.cluster.model_dump(mode="json", exclude_none=True), "dryRun": self.dry_run,
                "base": self.base, "only": list(self.only)}

    @classmethod
    def from_config(cls, config: Any, source: str) -> ClusterRunSpec:
        cluster = build_cluster(config["cluster"], source, kubeadm_checks=False, stored=True)
        return cls(cluster, bool(config.get("dryRun")), config.get("base"), tuple(config.get("only") or ()))

    # --- steps ----------------------------------------------------------------------------------------
    def steps(self) -> list[tuple[str, str]]:
        """(node, "init" | "join") in the order the cluster comes up."""
        if self.only:
            return [(name, JOIN) for name in self.only]
        first = self.cluster.first
        return [(first.name, INIT), *((n.name, JOIN) for n in self.cluster.control_planes[1:]),
                *((n.name, JOIN) for n in self.cluster.workers)]

    def stages(self) -> list[list[str]]:
        """Nodes by stage: each stage starts when every node of the one before is done."""
        names = [n for n, _ in self.steps()]
        sequential = [n for n in names if self.cluster.node(n).is_control_plane]
        parallel = [n for n in names if not self.cluster.node(n).is_control_plane]
        return [[n] for n in sequential] + ([parallel] if parallel else [])

    def node(self, name: str) -> NodeSpec:
        return self.cluster.node(name)

    def route(self) -> dict[str, Any]:
        """The cluster run's own route: its nodes' queues (what status shows), its control queue."""
        return run_route({n.name: n.worker for n in self.cluster.nodes}, dry_run=self.dry_run)

    def child_route(self, node: str, scope: str) -> dict[str, Any]:
        """A child's route; in a dry run the children of one cluster share the dry-run ``scope`` (one
        fake API, one directory of node roots: ``tasks.dryrun``)."""
        route = run_route({node: self.node(node).worker}, dry_run=self.dry_run)
        return {**route, "scope": scope} if self.dry_run else route


def child_id(run_id: str, node: str) -> str:
    return f"{run_id}.{node}"


def certs_child_id(run_id: str, node: str) -> str:
    """The run that uploads the certificates again before ``node``'s control-plane join."""
    return f"{run_id}.{node}.certs"


def cluster_run_id(batch_id: str, cluster: str) -> str:
    return f"{batch_id}.{cluster}"
