"""Authorization of the sandbox API server over kubeadm's RBAC objects (spec 2.3, 2.8-2.13) and the default policy.

The reader holds exactly what kubeadm creates; a case may leave out one group of objects to show that a
permission exists only because of it. Decisions go through the chain kube-apiserver builds from kubeadm's
--authorization-mode=Node,RBAC.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubeboot.sandbox.apiserver.rbac import build_authorizer
from kubeboot.sandbox.apiserver.types import RequestAttributes, UserInfo

RBAC = "rbac.authorization.k8s.io"
Obj = dict[str, Any]
BOOTSTRAPPERS = "system:bootstrappers:kubeadm:default-node-token"
RESOURCE_OF_KIND = {
    "ClusterRole": f"{RBAC}/clusterroles",
    "ClusterRoleBinding": f"{RBAC}/clusterrolebindings",
    "Role": f"{RBAC}/roles",
    "RoleBinding": f"{RBAC}/rolebindings",
    "Pod": "/pods",
    "PersistentVolumeClaim": "/persistentvolumeclaims",
}


class FakeReader:
    """An in-memory ObjectReader: objects keyed by (resource, namespace, name)."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        for obj in objects:
            meta = obj["metadata"]
            self.objects[(RESOURCE_OF_KIND[obj["kind"]], meta.get("namespace", ""), meta["name"])] = obj

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((resource, namespace, name))

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [o for (r, ns, _), o in self.objects.items() if r == resource and namespace in (None, ns)]


def group(name: str) -> dict[str, str]:
    return {"apiGroup": RBAC, "kind": "Group", "name": name}


def user_subject(name: str) -> dict[str, str]:
    return {"apiGroup": RBAC, "kind": "User", "name": name}


def sa_subject(namespace: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "namespace": namespace, "name": name}


def rule(verbs: list[str], resources: list[str], groups: tuple[str, ...] = ("",), names: tuple[str, ...] = ()) -> Obj:
    out: dict[str, Any] = {"apiGroups": list(groups), "resources": resources, "verbs": verbs}
    if names:
        out["resourceNames"] = list(names)
    return out


def role(kind: str, name: str, rules: list[Obj], namespace: str = "", labels: Obj | None = None) -> Obj:
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": f"{RBAC}/v1", "kind": kind, "metadata": meta, "rules": rules}


def binding(kind: str, name: str, ref_kind: str, ref: str, subjects: list[Obj], namespace: str = "") -> Obj:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": RBAC, "kind": ref_kind, "name": ref},
        "subjects": subjects,
    }


def crb(name: str, cluster_role: str, *subjects: Obj) -> Obj:
    return binding("ClusterRoleBinding", name, "ClusterRole", cluster_role, list(subjects))


def rb(namespace: str, name: str, *subjects: Obj) -> Obj:
    """A RoleBinding to the Role of the same name, as kubeadm names them."""
    return binding("RoleBinding", name, "Role", name, list(subjects), namespace)


def ns_role(namespace: str, name: str, verbs: list[str], resource: str, *names: str) -> Obj:
    return role("Role", name, [rule(verbs, [resource], names=names)], namespace)


# What kubeadm init creates (v1.36), grouped so a case can leave one group out.
KUBEADM = {
    "cluster-admins": [crb("kubeadm:cluster-admins", "cluster-admin", group("kubeadm:cluster-admins"))],
    "nodes-kubeadm-config": [
        ns_role("kube-system", "kubeadm:nodes-kubeadm-config", ["get"], "configmaps", "kubeadm-config"),
        rb("kube-system", "kubeadm:nodes-kubeadm-config", group(BOOTSTRAPPERS), group("system:nodes")),
    ],
    "kubelet-config": [
        ns_role("kube-system", "kubeadm:kubelet-config", ["get"], "configmaps", "kubelet-config"),
        rb("kube-system", "kubeadm:kubelet-config", group("system:nodes"), group(BOOTSTRAPPERS)),
    ],
    "kubeadm-certs": [
        ns_role("kube-system", "kubeadm:kubeadm-certs", ["get"], "secrets", "kubeadm-certs"),
        rb("kube-system", "kubeadm:kubeadm-certs", group(BOOTSTRAPPERS)),
    ],
    "get-nodes": [
        role("ClusterRole", "kubeadm:get-nodes", [rule(["get"], ["nodes"])]),
        crb("kubeadm:get-nodes", "kubeadm:get-nodes", group(BOOTSTRAPPERS)),
    ],
    "kubelet-bootstrap": [crb("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", group(BOOTSTRAPPERS))],
    "node-autoapprove-bootstrap": [
        crb(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            group(BOOTSTRAPPERS),
        )
    ],
    "node-autoapprove-certificate-rotation": [
        crb(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            group("system:nodes"),
        )
    ],
    "apiserver-kubelet-client": [
        crb(
            "kubeadm:apiserver-kubelet-client",
            "system:kubelet-api-admin",
            user_subject("kube-apiserver-kubelet-client"),
        )
    ],
    "bootstrap-signer-clusterinfo": [
        ns_role("kube-public", "kubeadm:bootstrap-signer-clusterinfo", ["get"], "configmaps", "cluster-info"),
        rb("kube-public", "kubeadm:bootstrap-signer-clusterinfo", user_subject("system:anonymous")),
    ],
    "coredns": [
        role(
            "ClusterRole",
            "system:coredns",
            [
                rule(["list", "watch"], ["endpoints", "services", "pods", "namespaces"]),
                rule(["list", "watch"], ["endpointslices"], ("discovery.k8s.io",)),
            ],
        ),
        crb("system:coredns", "system:coredns", sa_subject("kube-system", "coredns")),
    ],
    "node-proxier": [crb("kubeadm:node-proxier", "system:node-proxier", sa_subject("kube-system", "kube-proxy"))],
    "kube-proxy": [
        ns_role("kube-system", "kube-proxy", ["get"], "configmaps", "kube-proxy"),
        rb("kube-system", "kube-proxy", group(BOOTSTRAPPERS)),
    ],
}


def kubeadm_reader(without: tuple[str, ...] = (), extra: tuple[Obj, ...] = ()) -> FakeReader:
    return FakeReader([obj for step, objs in KUBEADM.items() if step not in without for obj in objs] + list(extra))


AUTH = "system:authenticated"
SUPER = UserInfo("kubernetes-super-admin", ("system:masters", AUTH))
ADMIN = UserInfo("kubernetes-admin", ("kubeadm:cluster-admins", AUTH))
ANON = UserInfo("system:anonymous", ("system:unauthenticated",))
TOKEN = UserInfo("system:bootstrap:abcdef", ("system:bootstrappers", BOOTSTRAPPERS, AUTH))
NODE = UserInfo("system:node:cp1", ("system:nodes", AUTH))
KUBELET_CLIENT = UserInfo("kube-apiserver-kubelet-client", (AUTH,))
SCHEDULER = UserInfo("system:kube-scheduler", (AUTH,))


def sa(namespace: str, name: str) -> UserInfo:
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTH)
    return UserInfo(f"system:serviceaccount:{namespace}:{name}", groups)


def res(user: UserInfo, verb: str, resource: str, ns: str = "", name: str = "", api: str = "") -> RequestAttributes:
    """A resource request; resource may be "<plural>/<subresource>"."""
    plural, _, sub = resource.partition("/")
    return RequestAttributes(user, verb, ns, api, "v1", plural, sub, name)


def url(user: UserInfo, path: str, verb: str = "get") -> RequestAttributes:
    return RequestAttributes(user, verb, path=path, resource_request=False)


def crb_reason(name: str, cluster_role: str, subject: str) -> str:
    return f'RBAC: allowed by ClusterRoleBinding "{name}" of ClusterRole "{cluster_role}" to {subject}'


def rb_reason(name: str, ns: str, ref: str, subject: str, ref_kind: str = "Role") -> str:
    return f'RBAC: allowed by RoleBinding "{name}/{ns}" of {ref_kind} "{ref}" to {subject}'


CERTS = "certificates.k8s.io"
CSRS = "certificatesigningrequests"
SELFNODE = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"
NO_RELATION = "no relationship found between node 'cp1' and this object"

CASES: list[tuple[str, RequestAttributes, tuple[str, ...], bool, str]] = [
    # (id, request, kubeadm groups left out, allowed, reason)
    ("system:masters may delete any secret", res(SUPER, "delete", "secrets", "kube-system", "x"), (), True, ""),
    ("system:masters may get any non-resource URL", url(SUPER, "/metrics"), (), True, ""),
    ("system:masters may act with no kubeadm object at all", res(SUPER, "create", "nodes"), tuple(KUBEADM), True, ""),
    (
        "kubeadm:cluster-admins may delete a node once its ClusterRoleBinding exists",
        res(ADMIN, "delete", "nodes", name="cp2"),
        (),
        True,
        crb_reason("kubeadm:cluster-admins", "cluster-admin", 'Group "kubeadm:cluster-admins"'),
    ),
    (
        "kubeadm:cluster-admins may get /metrics through cluster-admin's wildcard URL",
        url(ADMIN, "/metrics"),
        (),
        True,
        crb_reason("kubeadm:cluster-admins", "cluster-admin", 'Group "kubeadm:cluster-admins"'),
    ),
    (
        "kubeadm:cluster-admins may not list namespaces before its ClusterRoleBinding exists",
        res(ADMIN, "list", "namespaces"),
        ("cluster-admins",),
        False,
        "",
    ),
    (
        "anonymous may get kube-public/cluster-info once the RoleBinding exists",
        res(ANON, "get", "configmaps", "kube-public", "cluster-info"),
        (),
        True,
        rb_reason(
            "kubeadm:bootstrap-signer-clusterinfo",
            "kube-public",
            "kubeadm:bootstrap-signer-clusterinfo",
            'User "system:anonymous"',
        ),
    ),
    (
        "anonymous may not get cluster-info before the RoleBinding exists",
        res(ANON, "get", "configmaps", "kube-public", "cluster-info"),
        ("bootstrap-signer-clusterinfo",),
        False,
        "",
    ),
    (
        "anonymous may not get another configmap of kube-public",
        res(ANON, "get", "configmaps", "kube-public", "other"),
        (),
        False,
        "",
    ),
    ("anonymous may not list kube-public configmaps", res(ANON, "list", "configmaps", "kube-public"), (), False, ""),
    (
        "anonymous may not get a cluster-info configmap outside kube-public",
        res(ANON, "get", "configmaps", "kube-system", "cluster-info"),
        (),
        False,
        "",
    ),
    *[
        (
            f"anonymous may get {path}",
            url(ANON, path),
            (),
            True,
            crb_reason("system:public-info-viewer", "system:public-info-viewer", 'Group "system:unauthenticated"'),
        )
        for path in ("/healthz", "/livez", "/readyz", "/version")
    ],
    ("anonymous may not get /metrics", url(ANON, "/metrics"), (), False, ""),
    ("anonymous may not get /api", url(ANON, "/api"), (), False, ""),
    ("anonymous may not post to /healthz", url(ANON, "/healthz", "create"), (), False, ""),
    (
        "an authenticated user may get /apis/<group>/<version> through system:discovery's prefix",
        url(TOKEN, "/apis/certificates.k8s.io/v1"),
        (),
        True,
        crb_reason("system:discovery", "system:discovery", 'Group "system:authenticated"'),
    ),
    ("no one but cluster admins may get /metrics", url(TOKEN, "/metrics"), (), False, ""),
    (
        "a bootstrap token may create CSRs through kubeadm:kubelet-bootstrap",
        res(TOKEN, "create", CSRS, api=CERTS),
        (),
        True,
        crb_reason("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", f'Group "{BOOTSTRAPPERS}"'),
    ),
    (
        "a bootstrap token may not create CSRs before kubeadm:kubelet-bootstrap exists",
        res(TOKEN, "create", CSRS, api=CERTS),
        ("kubelet-bootstrap",),
        False,
        "",
    ),
    (
        "a bootstrap token may create nodeclient CSRs (auto-approval) through kubeadm:node-autoapprove-bootstrap",
        res(TOKEN, "create", f"{CSRS}/nodeclient", api=CERTS),
        (),
        True,
        crb_reason(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            f'Group "{BOOTSTRAPPERS}"',
        ),
    ),
    (
        "a bootstrap token may get a node through kubeadm:get-nodes",
        res(TOKEN, "get", "nodes", name="cp1"),
        (),
        True,
        crb_reason("kubeadm:get-nodes", "kubeadm:get-nodes", f'Group "{BOOTSTRAPPERS}"'),
    ),
    ("a bootstrap token may not list nodes", res(TOKEN, "list", "nodes"), (), False, ""),
    (
        "a bootstrap token may get kubeadm-config",
        res(TOKEN, "get", "configmaps", "kube-system", "kubeadm-config"),
        (),
        True,
        rb_reason(
            "kubeadm:nodes-kubeadm-config", "kube-system", "kubeadm:nodes-kubeadm-config", f'Group "{BOOTSTRAPPERS}"'
        ),
    ),
    (
        "a bootstrap token may get kubelet-config",
        res(TOKEN, "get", "configmaps", "kube-system", "kubelet-config"),
        (),
        True,
        rb_reason("kubeadm:kubelet-config", "kube-system", "kubeadm:kubelet-config", f'Group "{BOOTSTRAPPERS}"'),
    ),
    (
        "a bootstrap token may get the kube-proxy configmap",
        res(TOKEN, "get", "configmaps", "kube-system", "kube-proxy"),
        (),
        True,
        rb_reason("kube-proxy", "kube-system", "kube-proxy", f'Group "{BOOTSTRAPPERS}"'),
    ),
    (
        "a bootstrap token may not get the coredns configmap",
        res(TOKEN, "get", "configmaps", "kube-system", "coredns"),
        (),
        False,
        "",
    ),
    ("a bootstrap token may not list secrets", res(TOKEN, "list", "secrets", "kube-system"), (), False, ""),
    (
        "a bootstrap token may get the kubeadm-certs secret",
        res(TOKEN, "get", "secrets", "kube-system", "kubeadm-certs"),
        (),
        True,
        rb_reason("kubeadm:kubeadm-certs", "kube-system", "kubeadm:kubeadm-certs", f'Group "{BOOTSTRAPPERS}"'),
    ),
    (
        "a bootstrap token may not get its own token secret",
        res(TOKEN, "get", "secrets", "kube-system", "bootstrap-token-abcdef"),
        (),
        False,
        "",
    ),
    ("a node may get its own Node", res(NODE, "get", "nodes", name="cp1"), (), True, ""),
    ("a node may patch its own Node", res(NODE, "patch", "nodes", name="cp1"), (), True, ""),
    ("a node may update its own node status", res(NODE, "update", "nodes/status", name="cp1"), (), True, ""),
    (
        "a node may not get another Node",
        res(NODE, "get", "nodes", name="cp2"),
        (),
        False,
        "node 'cp1' cannot read 'cp2', only its own Node object",
    ),
    (
        "a node may not patch another Node",
        res(NODE, "patch", "nodes", name="cp2"),
        (),
        False,
        'node "cp1" is not allowed to modify node "cp2"',
    ),
    (
        "a node may not list all nodes",
        res(NODE, "list", "nodes"),
        (),
        False,
        "node 'cp1' cannot read all nodes, only its own Node object",
    ),
    ("a node may create CSRs by the node rules", res(NODE, "create", CSRS, api=CERTS), (), True, ""),
    (
        "a node may create selfnodeclient CSRs through kubeadm:node-autoapprove-certificate-rotation",
        res(NODE, "create", f"{CSRS}/selfnodeclient", api=CERTS),
        (),
        True,
        crb_reason("kubeadm:node-autoapprove-certificate-rotation", SELFNODE, 'Group "system:nodes"'),
    ),
    (
        "a node may not create selfnodeclient CSRs before that binding exists",
        res(NODE, "create", f"{CSRS}/selfnodeclient", api=CERTS),
        ("node-autoapprove-certificate-rotation",),
        False,
        "",
    ),
    (
        "a node may get kubelet-config through RBAC after the node authorizer has no opinion",
        res(NODE, "get", "configmaps", "kube-system", "kubelet-config"),
        (),
        True,
        rb_reason("kubeadm:kubelet-config", "kube-system", "kubeadm:kubelet-config", 'Group "system:nodes"'),
    ),
    (
        "a node may not get a configmap none of its pods uses",
        res(NODE, "get", "configmaps", "kube-system", "coredns"),
        (),
        False,
        NO_RELATION,
    ),
    (
        "a node may update its Lease",
        res(NODE, "update", "leases", "kube-node-lease", "cp1", "coordination.k8s.io"),
        (),
        True,
        "",
    ),
    (
        "a node may not update another node's Lease",
        res(NODE, "update", "leases", "kube-node-lease", "cp2", "coordination.k8s.io"),
        (),
        False,
        "can only access node lease with the same name as the requesting node",
    ),
    ("a node may create events", res(NODE, "create", "events", "default"), (), True, ""),
    (
        "the apiserver's kubelet client may get nodes/proxy through kubeadm:apiserver-kubelet-client",
        res(KUBELET_CLIENT, "get", "nodes/proxy", name="cp1"),
        (),
        True,
        crb_reason(
            "kubeadm:apiserver-kubelet-client", "system:kubelet-api-admin", 'User "kube-apiserver-kubelet-client"'
        ),
    ),
    (
        "the apiserver's kubelet client may not get nodes/proxy before that binding exists",
        res(KUBELET_CLIENT, "get", "nodes/proxy", name="cp1"),
        ("apiserver-kubelet-client",),
        False,
        "",
    ),
    (
        "the apiserver's kubelet client may not get secrets",
        res(KUBELET_CLIENT, "get", "secrets", "a", "b"),
        (),
        False,
        "",
    ),
    (
        "the bootstrap signer may update cluster-info in kube-public",
        res(sa("kube-system", "bootstrap-signer"), "update", "configmaps", "kube-public", "cluster-info"),
        (),
        True,
        rb_reason(
            "system:controller:bootstrap-signer",
            "kube-public",
            "system:controller:bootstrap-signer",
            'ServiceAccount "bootstrap-signer/kube-system"',
        ),
    ),
    (
        "the bootstrap signer may not update another configmap of kube-public",
        res(sa("kube-system", "bootstrap-signer"), "update", "configmaps", "kube-public", "other"),
        (),
        False,
        "",
    ),
    (
        "the bootstrap signer may get secrets in kube-system",
        res(sa("kube-system", "bootstrap-signer"), "get", "secrets", "kube-system", "bootstrap-token-abcdef"),
        (),
        True,
        rb_reason(
            "system:controller:bootstrap-signer",
            "kube-system",
            "system:controller:bootstrap-signer",
            'ServiceAccount "bootstrap-signer/kube-system"',
        ),
    ),
    (
        "the bootstrap signer may not delete secrets",
        res(sa("kube-system", "bootstrap-signer"), "delete", "secrets", "kube-system", "bootstrap-token-abcdef"),
        (),
        False,
        "",
    ),
    (
        "the token cleaner may delete secrets in kube-system",
        res(sa("kube-system", "token-cleaner"), "delete", "secrets", "kube-system", "bootstrap-token-abcdef"),
        (),
        True,
        rb_reason(
            "system:controller:token-cleaner",
            "kube-system",
            "system:controller:token-cleaner",
            'ServiceAccount "token-cleaner/kube-system"',
        ),
    ),
    (
        "the token cleaner may not delete secrets in another namespace",
        res(sa("kube-system", "token-cleaner"), "delete", "secrets", "default", "s"),
        (),
        False,
        "",
    ),
    (
        "a token-cleaner account of another namespace is not the token cleaner",
        res(sa("default", "token-cleaner"), "delete", "secrets", "kube-system", "s"),
        (),
        False,
        "",
    ),
    *[
        (
            f"the certificate controller may update certificatesigningrequests/{sub}",
            res(sa("kube-system", "certificate-controller"), "update", f"{CSRS}/{sub}", name="csr-1", api=CERTS),
            (),
            True,
            crb_reason(
                "system:controller:certificate-controller",
                "system:controller:certificate-controller",
                'ServiceAccount "certificate-controller/kube-system"',
            ),
        )
        for sub in ("approval", "status")
    ],
    (
        "the certificate controller may not update a CSR itself",
        res(sa("kube-system", "certificate-controller"), "update", CSRS, name="csr-1", api=CERTS),
        (),
        False,
        "",
    ),
    (
        "the certificate controller may approve for the kubelet client signer named in its rule",
        res(
            sa("kube-system", "certificate-controller"),
            "approve",
            "signers",
            name="kubernetes.io/kube-apiserver-client-kubelet",
            api=CERTS,
        ),
        (),
        True,
        crb_reason(
            "system:controller:certificate-controller",
            "system:controller:certificate-controller",
            'ServiceAccount "certificate-controller/kube-system"',
        ),
    ),
    (
        "the certificate controller may not approve for a signer its rule does not name",
        res(
            sa("kube-system", "certificate-controller"),
            "approve",
            "signers",
            name="kubernetes.io/kubelet-serving",
            api=CERTS,
        ),
        (),
        False,
        "",
    ),
    (
        "the garbage collector may delete any object through its wildcard rule",
        res(sa("kube-system", "generic-garbage-collector"), "delete", "deployments", "default", "d", "apps"),
        (),
        True,
        crb_reason(
            "system:controller:generic-garbage-collector",
            "system:controller:generic-garbage-collector",
            'ServiceAccount "generic-garbage-collector/kube-system"',
        ),
    ),
    (
        "the garbage collector may not create objects",
        res(sa("kube-system", "generic-garbage-collector"), "create", "deployments", "default", api="apps"),
        (),
        False,
        "",
    ),
    (
        "CoreDNS may list endpointslices",
        res(sa("kube-system", "coredns"), "list", "endpointslices", api="discovery.k8s.io"),
        (),
        True,
        crb_reason("system:coredns", "system:coredns", 'ServiceAccount "coredns/kube-system"'),
    ),
    (
        "CoreDNS may not get a single pod",
        res(sa("kube-system", "coredns"), "get", "pods", "default", "p"),
        (),
        False,
        "",
    ),
    (
        "kube-proxy may list services through kubeadm:node-proxier",
        res(sa("kube-system", "kube-proxy"), "list", "services"),
        (),
        True,
        crb_reason("kubeadm:node-proxier", "system:node-proxier", 'ServiceAccount "kube-proxy/kube-system"'),
    ),
    (
        "the scheduler may create pods/binding",
        res(SCHEDULER, "create", "pods/binding", "default", "p"),
        (),
        True,
        crb_reason("system:kube-scheduler", "system:kube-scheduler", 'User "system:kube-scheduler"'),
    ),
]


@pytest.mark.parametrize(
    ("request_attrs", "without", "allowed", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_kubeadm_cluster_authorizes_exactly_as_its_bindings_say(
    request_attrs: RequestAttributes, without: tuple[str, ...], allowed: bool, reason: str
) -> None:
    authorizer = build_authorizer("Node,RBAC", kubeadm_reader(without))
    assert authorizer.authorize(request_attrs) == (allowed, reason)
