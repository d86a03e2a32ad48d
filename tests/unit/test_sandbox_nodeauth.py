"""The sandbox's Node authorizer: what system:node:cp1 may do, judged from the pods, claims and leases stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from kubeboot.sandbox.apiserver.nodeauth import NodeAuthorizer, node_identity, pod_references
from kubeboot.sandbox.apiserver.types import RequestAttributes, UserInfo

CP1 = UserInfo("system:node:cp1", ("system:nodes", "system:authenticated"))
NO_RELATION = "no relationship found between node 'cp1' and this object"


def pod(name: str, node: str, namespace: str = "kube-system", **spec: Any) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": {"nodeName": node, **spec}}


PODS = [
    pod(
        "kube-proxy-a",
        "cp1",
        serviceAccountName="kube-proxy",
        volumes=[
            {"name": "kube-proxy", "configMap": {"name": "kube-proxy"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "token", "projected": {"sources": [{"secret": {"name": "projected-secret"}}]}},
        ],
        containers=[
            {"name": "c", "envFrom": [{"configMapRef": {"name": "env-config"}}]},
            {"name": "d", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}]},
        ],
        imagePullSecrets=[{"name": "registry"}],
    ),
    pod("etcd-cp1", "cp1"),
    pod("etcd-cp2", "cp2", volumes=[{"name": "s", "secret": {"secretName": "cp2-secret"}}]),
]
OBJECTS = {
    **{("/pods", p["metadata"]["namespace"], p["metadata"]["name"]): p for p in PODS},
    ("/persistentvolumeclaims", "kube-system", "data"): {"spec": {"volumeName": "pv-data"}},
    ("storage.k8s.io/volumeattachments", "", "va-cp1"): {"spec": {"nodeName": "cp1"}},
}


class FakeReader:
    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return OBJECTS.get((resource, namespace, name))

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [o for (r, ns, _), o in OBJECTS.items() if r == resource and namespace in (None, ns)]


def req(verb: str, resource: str, ns: str = "", name: str = "", api: str = "") -> RequestAttributes:
    plural, _, sub = resource.partition("/")
    return RequestAttributes(CP1, verb, ns, api, "v1", plural, sub, name)


CASES = [
    ("get its own Node", req("get", "nodes", name="cp1"), (True, "")),
    ("create its Node", req("create", "nodes"), (True, "")),
    ("patch its node status", req("patch", "nodes/status", name="cp1"), (True, "")),
    (
        "not update another node's status",
        req("update", "nodes/status", name="cp2"),
        (False, 'node "cp1" is not allowed to modify node "cp2"'),
    ),
    ("not delete its Node", req("delete", "nodes", name="cp1"), (False, "")),
    ("get a pod bound to it", req("get", "pods", "kube-system", "etcd-cp1"), (True, "")),
    ("not get a pod bound elsewhere", req("get", "pods", "kube-system", "etcd-cp2"), (False, NO_RELATION)),
    ("not get a pod that does not exist", req("get", "pods", "kube-system", "nope"), (False, NO_RELATION)),
    (
        "not list pods without a field selector",
        req("list", "pods", "kube-system"),
        (False, "can only list/watch pods with spec.nodeName field selector"),
    ),
    ("create a mirror pod", req("create", "pods", "kube-system"), (True, "")),
    ("delete its mirror pod", req("delete", "pods", "kube-system", "etcd-cp1"), (True, "")),
    (
        "not delete another node's pod",
        req("delete", "pods", "kube-system", "etcd-cp2"),
        (False, 'node "cp1" can only delete pods with spec.nodeName set to itself'),
    ),
    ("update the status of its pod", req("update", "pods/status", "kube-system", "etcd-cp1"), (True, "")),
    (
        "not update the status of another node's pod",
        req("patch", "pods/status", "kube-system", "etcd-cp2"),
        (False, 'node "cp1" can only update pod status for pods with spec.nodeName set to itself'),
    ),
    ("evict a pod", req("create", "pods/eviction", "kube-system", "etcd-cp1"), (True, "")),
    ("get a configmap its pod mounts", req("get", "configmaps", "kube-system", "kube-proxy"), (True, "")),
    ("get a configmap its pod takes env from", req("get", "configmaps", "kube-system", "env-config"), (True, "")),
    ("get a secret its pod projects", req("get", "secrets", "kube-system", "projected-secret"), (True, "")),
    ("get a secret its pod reads a key of", req("get", "secrets", "kube-system", "env-secret"), (True, "")),
    ("get its pod's image pull secret", req("get", "secrets", "kube-system", "registry"), (True, "")),
    (
        "not get a secret of another node's pod",
        req("get", "secrets", "kube-system", "cp2-secret"),
        (False, NO_RELATION),
    ),
    (
        "not get a same-named secret in another namespace",
        req("get", "secrets", "default", "registry"),
        (False, NO_RELATION),
    ),
    ("not list secrets", req("list", "secrets", "kube-system"), (False, "No Object name found")),
    (
        "not update a secret",
        req("update", "secrets", "kube-system", "registry"),
        (False, "can only read resources of this type"),
    ),
    ("get the claim of its pod", req("get", "persistentvolumeclaims", "kube-system", "data"), (True, "")),
    ("get the volume bound to its pod's claim", req("get", "persistentvolumes", name="pv-data"), (True, "")),
    ("not get an unrelated volume", req("get", "persistentvolumes", name="pv-other"), (False, NO_RELATION)),
    ("get its volume attachment", req("get", "volumeattachments", name="va-cp1", api="storage.k8s.io"), (True, "")),
    (
        "create a token for its pod's service account",
        req("create", "serviceaccounts/token", "kube-system", "kube-proxy"),
        (True, ""),
    ),
    (
        "not create a token for another account",
        req("create", "serviceaccounts/token", "kube-system", "coredns"),
        (False, NO_RELATION),
    ),
    ("create its Lease", req("create", "leases", "kube-node-lease", api="coordination.k8s.io"), (True, "")),
    (
        "not touch leases outside kube-node-lease",
        req("get", "leases", "kube-system", "cp1", "coordination.k8s.io"),
        (False, 'can only access leases in the "kube-node-lease" system namespace'),
    ),
    ("update its CSINode", req("update", "csinodes", name="cp1", api="storage.k8s.io"), (True, "")),
    (
        "not update another CSINode",
        req("update", "csinodes", name="cp2", api="storage.k8s.io"),
        (False, "can only access CSINode with the same name as the requesting node"),
    ),
    ("get services by the node rules", req("get", "services", "default", "kubernetes"), (True, "")),
    ("create tokenreviews by the node rules", req("create", "tokenreviews", api="authentication.k8s.io"), (True, "")),
    ("not create deployments: no opinion", req("create", "deployments", "default", api="apps"), (False, "")),
    (
        "not get /healthz: no opinion, RBAC decides",
        RequestAttributes(CP1, "get", path="/healthz", resource_request=False),
        (False, ""),
    ),
]


@pytest.mark.parametrize(("attrs", "decision"), [c[1:] for c in CASES], ids=[f"a node may {c[0]}" for c in CASES])
def test_node_authorizer_decides_like_kubernetes(attrs: RequestAttributes, decision: tuple[bool, str]) -> None:
    assert NodeAuthorizer(FakeReader()).authorize(attrs) == decision


@pytest.mark.parametrize(
    ("user", "identity"),
    [
        (CP1, ("cp1", True)),
        (UserInfo("system:node:cp1", ("system:authenticated",)), ("", False)),
        (UserInfo("cp1", ("system:nodes",)), ("", False)),
        (UserInfo("system:node:", ("system:nodes",)), ("", True)),
    ],
    ids=["node user in system:nodes", "node name without the group", "group without the node name", "empty node name"],
)
def test_node_identity_needs_the_name_prefix_and_the_group(user: UserInfo, identity: tuple[str, bool]) -> None:
    assert node_identity(user) == identity


def test_users_that_are_not_nodes_get_no_opinion_and_nameless_nodes_a_reason() -> None:
    admin = RequestAttributes(
        UserInfo("kubernetes-admin", ("kubeadm:cluster-admins",)), "get", resource="nodes", name="cp1"
    )
    nameless = RequestAttributes(UserInfo("system:node:", ("system:nodes",)), "get", resource="nodes", name="cp1")
    assert NodeAuthorizer(FakeReader()).authorize(admin) == (False, "")
    assert NodeAuthorizer(FakeReader()).authorize(nameless) == (False, 'unknown node for user "system:node:"')


def test_without_node_restriction_writes_to_other_nodes_pass_the_authorizer_as_in_kubernetes() -> None:
    authorizer = NodeAuthorizer(FakeReader(), node_restriction=False)
    assert authorizer.authorize(req("patch", "nodes", name="cp2")) == (True, "")
    assert authorizer.authorize(req("delete", "pods", "kube-system", "etcd-cp2")) == (True, "")


@dataclass(frozen=True)
class SelectedRequest(RequestAttributes):
    field_selector: str = ""


def test_field_selectors_scope_node_and_pod_lists_to_the_node_when_the_request_carries_them() -> None:
    authorizer = NodeAuthorizer(FakeReader())
    own_pods = SelectedRequest(CP1, "watch", resource="pods", field_selector="spec.nodeName=cp1")
    other_pods = SelectedRequest(CP1, "list", resource="pods", field_selector="spec.nodeName=cp2")
    own_node = SelectedRequest(CP1, "list", resource="nodes", field_selector="metadata.name==cp1")
    assert authorizer.authorize(own_pods) == (True, "")
    assert authorizer.authorize(other_pods) == (False, "can only list/watch pods with spec.nodeName field selector")
    assert authorizer.authorize(own_node) == (True, "")


def test_pod_references_name_every_kind_of_object_a_pod_uses() -> None:
    proxy = PODS[0]
    assert pod_references(proxy, "configmap") == {"kube-proxy", "env-config"}
    assert pod_references(proxy, "secret") == {"projected-secret", "env-secret", "registry"}
    assert pod_references(proxy, "pvc") == {"data"}
    assert pod_references(proxy, "serviceaccount") == {"kube-proxy"}
    assert pod_references(PODS[1], "serviceaccount") == {"default"}
