"""kubeboot's ``Cluster`` document (``kubeboot.dev/v1alpha1``): one kubeadm cluster and its nodes.

Reads: one YAML file (``load_cluster``) or a parsed mapping (``build_cluster``: a Batch's items, the run
state). Writes: nothing. Every problem is one ``ConfigError`` naming the file, the document
(``Cluster <name>``), the field path and, for a node, the node: ``cluster.yaml: Cluster demo:
spec.nodes[3].role: node w1: ...``.

    apiVersion: kubeboot.dev/v1alpha1
    kind: Cluster
    metadata: {name: demo}                 # the cluster's name; clusterName defaults to it
    spec:
      clusterConfiguration: {...}          # kubeadm's ClusterConfiguration (v1beta4 fields)
      kubeletConfiguration: {...}          # optional component configs, as in a kubeadm config file
      kubeProxyConfiguration: {...}
      timeouts: {nodeWorker: 10m}          # how long a node's phase may wait for a worker on its queue
      nodes:
      - {name: cp1, address: 10.0.0.11, role: control-plane, workerId: machine-1,
         labels: {zone: a}, taints: [...], kubeletExtraArgs: [{name: max-pods, value: "50"}],
         ignorePreflightErrors: [Swap]}

The first control-plane node (document order) is initialised; the other control-plane nodes join one
at a time, then the workers. ``workerId`` names the node worker (queue ``node.<workerId>``) and
defaults to the node name. ``labels`` become the kubelet's ``--node-labels`` (with the kubelet's own
rule on ``kubernetes.io`` / ``k8s.io`` keys); ``taints`` unset means kubeadm's default (the
control-plane taint on control-plane nodes, none on workers).

Each node's kubeadm documents (``init_documents`` / ``join_document``) are built here from the cluster,
the bootstrap token and certificate key the cluster's run made, and the CA pin known after the init.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

from pydantic import Field, ValidationError, field_validator

from kubeboot.config import constants as c
from kubeboot.config import fieldchecks
from kubeboot.config.duration import parse_duration
from kubeboot.config.errors import ConfigError, field_path
from kubeboot.config.models import Arg, Model, Taint

API_VERSION: Final = c.KUBEBOOT_API_VERSION
CLUSTER_KIND: Final = "Cluster"
CONTROL_PLANE: Final = "control-plane"
WORKER: Final = "worker"
DEFAULT_NODE_WORKER_TIMEOUT: Final = "10m"
NODE_LABELS_ARG: Final = "node-labels"

_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# The kubelet refuses to set labels in the kubernetes.io / k8s.io namespaces on itself, except these
# (k8s.io/kubelet/pkg/apis: KubeletLabels, KubeletLabelNamespaces).
_KUBELET_LABELS: Final = frozenset({
    "kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os", "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region", "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region", "topology.kubernetes.io/zone",
})
_KUBELET_NAMESPACES: Final = ("kubelet.kubernetes.io", "node.kubernetes.io")


def label_problem(key: str, value: str) -> str | None:
    """A Kubernetes label (qualified name, value) the kubelet may set on its own Node, or why not."""
    prefix, _, name = key.rpartition("/")
    if prefix and not fieldchecks.is_dns1123_subdomain(prefix):
        return f"label key {key!r}: prefix must be a DNS subdomain"
    if not (len(name) <= 63 and _LABEL_NAME.match(name)):
        return f"label key {key!r}: name must be 1-63 letters, digits, '-', '_' or '.', alphanumeric at both ends"
    if value and not (len(value) <= 63 and _LABEL_NAME.match(value)):
        return f"label {key}: value {value!r} must be at most 63 letters, digits, '-', '_' or '.'"
    domain = prefix.lower()
    restricted = any(domain == d or domain.endswith("." + d) for d in ("kubernetes.io", "k8s.io"))
    allowed = key in _KUBELET_LABELS or any(domain == d or domain.endswith("." + d) for d in _KUBELET_NAMESPACES)
    if restricted and not allowed:
        return (f"label {key!r}: the kubelet may not set labels in the kubernetes.io or k8s.io namespaces "
                f"except {', '.join(_KUBELET_NAMESPACES)} and the well-known ones")
    return None


class Metadata(Model):
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if problem := fieldchecks.dns_subdomain(v):
            raise ValueError(problem)
        return v


class NodeSpec(Model):
    name: str
    address: str = ""  # required in a document (checked there); a worker added later may have none
    role: Literal["control-plane", "worker"]
    workerId: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] | None = None
    kubeletExtraArgs: list[Arg] = Field(default_factory=list)
    ignorePreflightErrors: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _node_name(cls, v: str) -> str:
        if problem := fieldchecks.node_name(v):
            raise ValueError(problem)
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if v and (problem := fieldchecks.ip_address(v)):
            raise ValueError(problem)
        return v

    @field_validator("workerId")
    @classmethod
    def _worker_id(cls, v: str) -> str:
        # A worker id becomes the queue node.<id>: the routing accepts DNS-label-like ids only.
        if v and not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", v):
            raise ValueError(f"{v!r} is not a valid worker id: lowercase letters, digits, '-' and '.'")
        return v

    @property
    def worker(self) -> str:
        return self.workerId or self.name

    @property
    def is_control_plane(self) -> bool:
        return self.role == CONTROL_PLANE

    def registration(self) -> dict[str, Any]:
        """The node's ``nodeRegistration`` (kubeadm v1beta4), labels as the kubelet's --node-labels."""
        args = [a.model_dump() for a in self.kubeletExtraArgs]
        if self.labels:
            labels = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
            args.append({"name": NODE_LABELS_ARG, "value": labels})
        reg: dict[str, Any] = {"name": self.name, "kubeletExtraArgs": args}
        if self.taints is not None:
            reg["taints"] = [t.model_dump(exclude_none=True) for t in self.taints]
        if self.ignorePreflightErrors:
            reg["ignorePreflightErrors"] = list(self.ignorePreflightErrors)
        return reg


class ClusterTimeouts(Model):
    nodeWorker: str = DEFAULT_NODE_WORKER_TIMEOUT

    @field_validator("nodeWorker")
    @classmethod
    def _positive(cls, v: str) -> str:
        if parse_duration(v) <= 0:
            raise ValueError(f"{v!r} must be a positive duration (e.g. 30s, 10m)")
        return v

    @property
    def node_worker_seconds(self) -> float:
        return parse_duration(self.nodeWorker)


class ClusterSpec(Model):
    clusterConfiguration: dict[str, Any] = Field(default_factory=dict)
    kubeletConfiguration: dict[str, Any] | None = None
    kubeProxyConfiguration: dict[str, Any] | None = None
    timeouts: ClusterTimeouts = Field(default_factory=ClusterTimeouts)
    nodes: list[NodeSpec] = Field(min_length=1)


class Cluster(Model):
    apiVersion: Literal["kubeboot.dev/v1alpha1"]
    kind: Literal["Cluster"]
    metadata: Metadata
    spec: ClusterSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def nodes(self) -> list[NodeSpec]:
        return self.spec.nodes

    @property
    def control_planes(self) -> list[NodeSpec]:
        return [n for n in self.nodes if n.is_control_plane]

    @property
    def workers(self) -> list[NodeSpec]:
        return [n for n in self.nodes if not n.is_control_plane]

    @property
    def first(self) -> NodeSpec:
        """The node ``kubeadm init`` runs on."""
        return self.control_planes[0]

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)

    @property
    def bind_port(self) -> int:
        return c.APISERVER_PORT

    @property
    def join_endpoint(self) -> str:
        """Where joining nodes discover the cluster: controlPlaneEndpoint, else the first node's API server."""
        endpoint = str(self.spec.clusterConfiguration.get("controlPlaneEndpoint") or "")
        if endpoint:
            return endpoint if ":" in endpoint.rsplit("]", 1)[-1] else f"{endpoint}:{self.bind_port}"
        host = self.first.address
        return f"[{host}]:{self.bind_port}" if ":" in host else f"{host}:{self.bind_port}"

    # --- kubeadm documents of each node -----------------------------------------------------------
    def cluster_document(self) -> dict[str, Any]:
        doc = {"apiVersion": c.V1BETA4, "kind": "ClusterConfiguration", **self.spec.clusterConfiguration}
        doc.setdefault("clusterName", self.name)
        return doc

    def component_documents(self) -> list[dict[str, Any]]:
        docs = []
        for kind, api, body in (("KubeletConfiguration", "kubelet.config.k8s.io/v1beta1",
                                 self.spec.kubeletConfiguration),
                                ("KubeProxyConfiguration", "kubeproxy.config.k8s.io/v1alpha1",
                                 self.spec.kubeProxyConfiguration)):
            if body is not None:
                docs.append({"apiVersion": api, "kind": kind, **body})
        return docs

    def init_documents(self, *, token: str, certificate_key: str, dry_run: bool = False) -> list[dict[str, Any]]:
        """``kubeadm init``'s config for the first control-plane node, with the cluster run's token and key."""
        node = self.first
        init: dict[str, Any] = {
            "apiVersion": c.V1BETA4, "kind": "InitConfiguration", "dryRun": dry_run,
            "bootstrapTokens": [{"token": token, "description": f"kubeboot cluster {self.name}"}],
            "certificateKey": certificate_key, "nodeRegistration": node.registration(),
            "localAPIEndpoint": {"advertiseAddress": node.address, "bindPort": self.bind_port},
        }
        return [init, self.cluster_document(), *self.component_documents()]

    def join_document(self, node: NodeSpec, *, token: str, certificate_key: str, ca_pins: list[str],
                      dry_run: bool = False) -> dict[str, Any]:
        """``kubeadm join``'s JoinConfiguration for ``node``."""
        doc: dict[str, Any] = {
            "apiVersion": c.V1BETA4, "kind": "JoinConfiguration", "dryRun": dry_run,
            "nodeRegistration": node.registration(),
            "discovery": {"bootstrapToken": {"token": token, "apiServerEndpoint": self.join_endpoint,
                                             "caCertHashes": list(ca_pins)}},
        }
        if node.is_control_plane:
            doc["controlPlane"] = {"localAPIEndpoint": {"advertiseAddress": node.address, "bindPort": self.bind_port},
                                   "certificateKey": certificate_key}
        return doc


# --- loading and validation ---------------------------------------------------------------------------

def _doc_label(raw: dict[str, Any]) -> str:
    meta = raw.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{CLUSTER_KIND} {name}" if isinstance(name, str) and name else CLUSTER_KIND


def _node_of(raw: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """'node <name>: ' when ``loc`` is inside spec.nodes[i] of a node that has a name."""
    if len(loc) >= 3 and loc[:2] == ("spec", "nodes") and isinstance(loc[2], int):
        nodes = (raw.get("spec") or {}).get("nodes") or []
        if isinstance(nodes, list) and loc[2] < len(nodes) and isinstance(nodes[loc[2]], dict):
            name = nodes[loc[2]].get("name")
            if isinstance(name, str) and name:
                return f"node {name}: "
    return ""


def _pydantic_problem(err: ValidationError, raw: dict[str, Any], file: str) -> ConfigError:
    first = err.errors()[0]
    loc = tuple(first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "missing":
        msg = "required field is missing"
    elif first["type"] == "literal_error" and loc in (("apiVersion",), ("kind",)):
        msg = f"must be {API_VERSION if loc == ('apiVersion',) else CLUSTER_KIND} (got {first.get('input')!r})"
    return ConfigError(_node_of(raw, loc) + msg, file=file, document=_doc_label(raw), field=field_path(loc))


def _node_problem(cluster: Cluster, i: int, field: str, message: str, file: str) -> ConfigError:
    return ConfigError(f"node {cluster.nodes[i].name}: {message}", file=file, document=f"{CLUSTER_KIND} {cluster.name}",
                       field=f"spec.nodes[{i}]{field}")


def _check_nodes(cluster: Cluster, file: str, *, addresses: bool = True) -> None:
    seen: dict[str, int] = {}
    workers: dict[str, int] = {}
    for i, node in enumerate(cluster.nodes):
        if node.name in seen:
            raise _node_problem(cluster, i, ".name", f"the name is also spec.nodes[{seen[node.name]}]'s", file)
        seen[node.name] = i
        if addresses and not node.address:
            raise _node_problem(cluster, i, ".address", "required field is missing (the node's IP address)", file)
        if node.worker in workers:
            raise _node_problem(cluster, i, ".workerId", f"worker {node.worker} also serves spec.nodes"
                                f"[{workers[node.worker]}]: one node worker serves one node", file)
        workers[node.worker] = i
        for key, value in node.labels.items():
            if problem := label_problem(key, value):
                raise _node_problem(cluster, i, f".labels.{key}", problem, file)
        if node.labels and any(a.name == NODE_LABELS_ARG for a in node.kubeletExtraArgs):
            raise _node_problem(cluster, i, ".kubeletExtraArgs", "give node labels in labels or in the "
                                "kubelet's --node-labels argument, not both", file)
    if not cluster.control_planes:
        raise ConfigError("a cluster needs at least one node with role control-plane (the first one is "
                          "initialised)", file=file, document=f"{CLUSTER_KIND} {cluster.name}", field="spec.nodes")


def _check_cluster_configuration(cluster: Cluster, file: str) -> None:
    cc = cluster.spec.clusterConfiguration
    label, where = f"{CLUSTER_KIND} {cluster.name}", "spec.clusterConfiguration"
    for key, want in (("apiVersion", c.V1BETA4), ("kind", "ClusterConfiguration")):
        if key in cc and cc[key] != want:
            raise ConfigError(f"must be {want} (got {cc[key]!r})", file=file, document=label, field=f"{where}.{key}")
    name = cc.get("clusterName")
    if name is not None and name != cluster.name:
        raise ConfigError(f"clusterName {name!r} differs from metadata.name {cluster.name!r}: kubeboot knows a "
                          "cluster by one name", file=file, document=label, field=f"{where}.clusterName")
    endpoint = str(cc.get("controlPlaneEndpoint") or "")
    if endpoint and (problem := fieldchecks.host_port(endpoint)):
        raise ConfigError(problem, file=file, document=label, field=f"{where}.controlPlaneEndpoint")
    if len(cluster.control_planes) > 1 and not endpoint:
        second = cluster.control_planes[1]
        raise ConfigError(f"node {second.name}: joining a second control-plane node needs a stable "
                          "controlPlaneEndpoint (a load balancer or DNS name in front of the API servers)",
                          file=file, document=label, field=f"{where}.controlPlaneEndpoint")


def check_kubeadm(cluster: Cluster, file: str) -> None:
    """kubeadm's own validation of the init node's documents, its errors re-addressed to this document."""
    from kubeboot.config.loader import build_init_config

    placeholder_token, placeholder_key = "abcdef.0123456789abcdef", "0" * 64
    docs = cluster.init_documents(token=placeholder_token, certificate_key=placeholder_key)
    try:
        build_init_config(docs, file, fill_node_defaults=False)
    except ConfigError as e:
        raise _readdressed(cluster, e, file) from None


_SPEC_FIELDS: Final = {"ClusterConfiguration": "spec.clusterConfiguration",
                       "KubeletConfiguration": "spec.kubeletConfiguration",
                       "KubeProxyConfiguration": "spec.kubeProxyConfiguration"}


def _readdressed(cluster: Cluster, e: ConfigError, file: str) -> ConfigError:
    label = f"{CLUSTER_KIND} {cluster.name}"
    if e.document in _SPEC_FIELDS:
        field = f"{_SPEC_FIELDS[e.document]}.{e.field}" if e.field else _SPEC_FIELDS[e.document]
        return ConfigError(e.message, file=file, document=label, field=field)
    node = cluster.first
    index = cluster.nodes.index(node)
    field = e.field.removeprefix("nodeRegistration.").removeprefix("localAPIEndpoint.advertiseAddress")
    return ConfigError(f"node {node.name}: {e.message}", file=file, document=label,
                       field=f"spec.nodes[{index}]" + (f".{field}" if field else ""))


def build_cluster(raw: Any, file: str, *, kubeadm_checks: bool = True, stored: bool = False) -> Cluster:
    """The validated Cluster of one parsed document; ``ConfigError`` on the first problem. ``stored``: a
    cluster run's own copy, which may hold a worker added later without an address."""
    if not isinstance(raw, dict):
        raise ConfigError("a Cluster document must be a mapping", file=file)
    try:
        cluster = Cluster.model_validate(raw)
    except ValidationError as e:
        raise _pydantic_problem(e, raw, file) from None
    _check_nodes(cluster, file, addresses=not stored)
    _check_cluster_configuration(cluster, file)
    if kubeadm_checks:
        check_kubeadm(cluster, file)
    return cluster


def load_cluster(path: str) -> Cluster:
    """Read and validate a file holding one Cluster document."""
    from pathlib import Path

    from kubeboot.config.loader import _read_documents

    docs = _read_documents(Path(path))
    if len(docs) != 1:
        raise ConfigError(f"expected one {CLUSTER_KIND} document, found {len(docs)}", file=path)
    return build_cluster(docs[0], path)


__all__ = ["API_VERSION", "CLUSTER_KIND", "Cluster", "NodeSpec", "build_cluster", "label_problem", "load_cluster"]
