"""The resources the emulated API server serves: one table, as data.

Reads and writes nothing. Each ``ResourceType`` row names the group/version/plural/kind, the scope, the
subresources and short names discovery advertises, and the strategic-merge-patch schema of the kind
(``tasks.smp``: the list fields that carry a ``patchMergeKey`` in k8s.io/api, the others are replaced
on a strategic patch, exactly as apimachinery does). Only what kubeadm, a kubelet and the emulated
controllers touch is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubeboot.tasks import smp
from kubeboot.tasks.smp import MergeList

CRUD = ("create", "delete", "get", "list", "patch", "update", "watch")
SUB_VERBS = ("get", "patch", "update")

META: dict[str, Any] = {"metadata": {"finalizers": MergeList(""), "ownerReferences": MergeList("uid")}}
POD: dict[str, Any] = {**smp.POD, **META}
POD_TEMPLATE: dict[str, Any] = {"metadata": META["metadata"], "spec": smp.POD["spec"]}
WORKLOAD: dict[str, Any] = {**META, "spec": {"template": POD_TEMPLATE}, "status": {"conditions": MergeList("type")}}
# NodeSpec.taints carries no patch strategy in k8s.io/api/core/v1: a strategic patch replaces the list.
NODE: dict[str, Any] = {**META, "spec": {"podCIDRs": MergeList("")},
                        "status": {"conditions": MergeList("type"), "addresses": MergeList("type")}}
SERVICE: dict[str, Any] = {**META, "spec": {"ports": MergeList("port")}}
SERVICE_ACCOUNT: dict[str, Any] = {**META, "secrets": MergeList("name")}
NAMESPACE: dict[str, Any] = {**META, "status": {"conditions": MergeList("type")}}


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = CRUD
    smp: dict[str, Any] = field(default_factory=lambda: META)
    stored: bool = True  # False: a review kind, answered and never persisted
    # The strategy's AllowUnconditionalUpdate: False means a PUT must carry metadata.resourceVersion
    # (Leases: leader election is only safe with compare-and-swap).
    unconditional_update: bool = True

    @property
    def key(self) -> str:
        """The store key and ObjectReader resource name: ``<group>/<plural>``."""
        return f"{self.group}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()


def _core(plural: str, kind: str, namespaced: bool = True, **kw: Any) -> ResourceType:
    return ResourceType("", "v1", plural, kind, namespaced, **kw)


RBAC = "rbac.authorization.k8s.io"
RESOURCES: tuple[ResourceType, ...] = (
    _core("namespaces", "Namespace", False, subresources=("status",), short_names=("ns",), smp=NAMESPACE),
    _core("configmaps", "ConfigMap", short_names=("cm",)),
    _core("secrets", "Secret"),
    _core("serviceaccounts", "ServiceAccount", short_names=("sa",), smp=SERVICE_ACCOUNT),
    _core("services", "Service", subresources=("status",), short_names=("svc",), smp=SERVICE),
    _core("nodes", "Node", False, subresources=("status",), short_names=("no",), smp=NODE),
    _core("pods", "Pod", subresources=("status",), short_names=("po",), smp=POD),
    _core("events", "Event", short_names=("ev",)),
    ResourceType("apps", "v1", "deployments", "Deployment", True, ("status",), ("deploy",), smp=WORKLOAD),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, ("status",), ("ds",), smp=WORKLOAD),
    ResourceType(RBAC, "v1", "roles", "Role", True),
    ResourceType(RBAC, "v1", "rolebindings", "RoleBinding", True),
    ResourceType(RBAC, "v1", "clusterroles", "ClusterRole", False),
    ResourceType(RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ResourceType("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", False,
                 ("approval", "status"), ("csr",)),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, unconditional_update=False),
    ResourceType("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False,
                 verbs=("create",), stored=False),
    ResourceType("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False,
                 verbs=("create",), stored=False),
    ResourceType("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False,
                 verbs=("create",), stored=False),
)

_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KEY = {r.key: r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PATH.get((group, version, plural))


def group_versions() -> dict[str, list[str]]:
    """{group: [versions]} in table order, core ("") included."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out
