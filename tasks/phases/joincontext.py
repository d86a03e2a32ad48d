"""What a join phase receives: the node's context plus the JoinConfiguration, and what discovery learnt.

kubeadm's join phases read ``data.Cfg()`` (the JoinConfiguration) and ``data.InitCfg()`` (the cluster's
ClusterConfiguration from ``kubeadm-config`` with this node's registration). Here ``ctx.join`` is the
first; ``ctx.cfg`` is the second once discovery ran (before that, kubeadm's defaults stand in), so the
init phases' helpers (certificates, kubeconfig files, manifests, kubelet files) serve the join unchanged.

Run secrets (encrypted in the run state; a dict for ``kubeboot join phase``):

| name                  | content                                                                   |
|-----------------------|---------------------------------------------------------------------------|
| ``join.cluster-info`` | the validated cluster-info kubeconfig (server + CA): trusted from here on |
| ``join.cluster``      | JSON ``{"ClusterConfiguration": {...}, "kubelet": {...}}`` read with the  |
|                       | bootstrap token from ``kubeadm-config`` and ``kubelet-config``            |
| ``join.discovery-since`` | when discovery first started (UTC ISO): its deadline counts from here  |

``ctx.turn`` serializes etcd membership changes of one cluster (a Redis lock when phases run as tasks,
none in process, like kubeadm itself).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol

from kubeboot.config.join import JoinConfig
from kubeboot.config.models import ClusterConfiguration
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks.discovery import ClusterInfo, cluster_of, http_fetch
from kubeboot.tasks.phases.context import NodeContext

CLUSTER_INFO = "join.cluster-info"
CLUSTER = "join.cluster"
DISCOVERY_SINCE = "join.discovery-since"


class Turn(Protocol):
    """One holder at a time per cluster for etcd membership changes."""

    def acquire(self) -> str:
        """Take (or keep) the turn: "" when held, else who holds it (for the retry message)."""
        ...

    def release(self) -> None: ...


@dataclass
class JoinNodeContext(NodeContext):
    _: KW_ONLY
    join: JoinConfig
    turn: Turn | None = None
    fetch: Callable[[str, bytes | None], dict[str, Any]] = field(default=http_fetch)


def cluster_info(ctx: NodeContext) -> ClusterInfo | None:
    raw = ctx.secrets.get(CLUSTER_INFO)
    if not raw:
        return None
    text = raw.decode()
    server, ca = cluster_of(text, "stored cluster-info")
    return ClusterInfo(server, ca, text)


def stored_cluster(join: JoinConfig, secrets_get: Callable[[str], bytes | None]) -> InitConfig | None:
    """The join's InitConfig from the discovered cluster documents, None before discovery."""
    raw = secrets_get(CLUSTER)
    if not raw:
        return None
    docs = json.loads(raw)
    cluster = ClusterConfiguration.model_validate(docs["ClusterConfiguration"])
    cfg = join.init_config(cluster, docs.get("kubelet") or {})
    if join.is_control_plane and not cfg.advertise_address:
        # kubeadm: "found advertiseAddress empty; using default interface's IP address", chosen on the
        # joining node itself (this runs there), not where the join was submitted.
        from kubeboot.config.loader import default_advertise_address

        cfg.init.localAPIEndpoint.advertiseAddress = default_advertise_address()
    return cfg


def config_for(join: JoinConfig, secrets_get: Callable[[str], bytes | None]) -> InitConfig:
    return stored_cluster(join, secrets_get) or join.provisional_init_config()


__all__ = ["CLUSTER", "CLUSTER_INFO", "DISCOVERY_SINCE", "JoinNodeContext", "Turn", "cluster_info",
           "config_for", "stored_cluster"]
