"""RBAC rule semantics, the default policy overlay, ClusterRole aggregation and the authorizer chain of the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from kubeboot.sandbox.apiserver import bootstrappolicy
from kubeboot.sandbox.apiserver.rbac import RBACAuthorizer, build_authorizer, rule_allows, union
from kubeboot.sandbox.apiserver.types import RequestAttributes, UserInfo

RBAC = "rbac.authorization.k8s.io"
Obj = dict[str, Any]
ALICE = UserInfo("alice", ("devs", "system:authenticated"))


class FakeReader:
    """An in-memory ObjectReader over RBAC objects."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        plural = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings"}
        plural |= {"Role": "roles", "RoleBinding": "rolebindings"}
        self.objects = {
            (f"{RBAC}/{plural[o['kind']]}", o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
            for o in objects
        }

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((resource, namespace, name))

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [o for (r, ns, _), o in self.objects.items() if r == resource and namespace in (None, ns)]


def obj(kind: str, name: str, namespace: str = "", **fields: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    meta |= {"labels": fields.pop("labels")} if "labels" in fields else {}
    return {"apiVersion": f"{RBAC}/v1", "kind": kind, "metadata": meta, **fields}


def bind(kind: str, name: str, ref_kind: str, ref: str, subjects: list[Obj], namespace: str = "") -> dict[str, Any]:
    return obj(kind, name, namespace, roleRef={"apiGroup": RBAC, "kind": ref_kind, "name": ref}, subjects=subjects)


USER_ALICE = {"apiGroup": RBAC, "kind": "User", "name": "alice"}


def res(
    verb: str, resource: str, ns: str = "", name: str = "", api: str = "", user: UserInfo = ALICE
) -> RequestAttributes:
    plural, _, sub = resource.partition("/")
    return RequestAttributes(user, verb, ns, api, "v1", plural, sub, name)


def url(path: str, verb: str = "get") -> RequestAttributes:
    return RequestAttributes(ALICE, verb, path=path, resource_request=False)


RULE_CASES = [
    (
        "a verb wildcard matches any verb",
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]},
        res("deletecollection", "pods"),
        True,
    ),
    (
        "a listed verb matches only itself",
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        res("list", "pods"),
        False,
    ),
    (
        "a group wildcard matches a named group",
        {"apiGroups": ["*"], "resources": ["deployments"], "verbs": ["get"]},
        res("get", "deployments", api="apps"),
        True,
    ),
    (
        "the core group is the empty string only",
        {"apiGroups": [""], "resources": ["deployments"], "verbs": ["get"]},
        res("get", "deployments", api="apps"),
        False,
    ),
    (
        "a resource wildcard matches subresources too",
        {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["update"]},
        res("update", "deployments/scale", api="apps"),
        True,
    ),
    (
        "a plain resource does not grant its subresources",
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        res("get", "pods/log", "d", "p"),
        False,
    ),
    (
        "a subresource rule does not grant the resource",
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["update"]},
        res("update", "pods", "d", "p"),
        False,
    ),
    (
        "*/status matches the status of any resource",
        {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["update"]},
        res("update", "deployments/status", api="apps"),
        True,
    ),
    (
        "*/status does not match another subresource",
        {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["update"]},
        res("update", "deployments/scale", api="apps"),
        False,
    ),
    (
        "*/status does not match the resource itself",
        {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["update"]},
        res("update", "deployments", api="apps"),
        False,
    ),
    (
        "resourceNames admit the named object",
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get"]},
        res("get", "configmaps", "n", "a"),
        True,
    ),
    (
        "resourceNames refuse other objects",
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get"]},
        res("get", "configmaps", "n", "b"),
        False,
    ),
    (
        "resourceNames refuse a list, which names nothing",
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["list"]},
        res("list", "configmaps", "n"),
        False,
    ),
    (
        "resourceNames refuse a create, which names nothing",
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["create"]},
        res("create", "configmaps", "n"),
        False,
    ),
    ("a nonResourceURL matches exactly", {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}, url("/healthz"), True),
    (
        "a nonResourceURL does not match its children",
        {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
        url("/healthz/etcd"),
        False,
    ),
    (
        "a trailing * matches by prefix",
        {"nonResourceURLs": ["/logs/*"], "verbs": ["get"]},
        url("/logs/kubelet.log"),
        True,
    ),
    ("a trailing * keeps the slash before it", {"nonResourceURLs": ["/logs/*"], "verbs": ["get"]}, url("/logs"), False),
    ("a * URL matches every path", {"nonResourceURLs": ["*"], "verbs": ["get"]}, url("/metrics"), True),
    (
        "a resource rule never matches a URL",
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
        url("/metrics"),
        False,
    ),
    ("a URL rule never matches a resource", {"nonResourceURLs": ["*"], "verbs": ["*"]}, res("get", "pods"), False),
]


@pytest.mark.parametrize(("rule", "attrs", "expected"), [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES])
def test_rule_matching_follows_kubernetes(rule: dict[str, Any], attrs: RequestAttributes, expected: bool) -> None:
    assert rule_allows(attrs, rule) is expected


def test_the_data_file_leaves_aggregated_roles_empty_so_aggregation_fills_them() -> None:
    view = next(
        o for o in bootstrappolicy.default_objects() if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "view"
    )
    assert view["rules"] is None
    rules = bootstrappolicy.cluster_role_rules(FakeReader(), "view") or []
    assert any("pods" in r.get("resources", []) and "list" in r["verbs"] for r in rules)
    assert not any("secrets" in r.get("resources", []) for r in rules)


def test_admin_aggregates_edit_which_aggregates_view() -> None:
    reader = FakeReader()
    view = bootstrappolicy.cluster_role_rules(reader, "view") or []
    edit = bootstrappolicy.cluster_role_rules(reader, "edit") or []
    admin = bootstrappolicy.cluster_role_rules(reader, "admin") or []
    assert all(r in edit for r in view) and all(r in admin for r in edit)
    assert any("rolebindings" in r.get("resources", []) for r in admin)
    assert not any("rolebindings" in r.get("resources", []) for r in edit)


def test_a_role_binding_to_view_grants_reads_in_its_namespace_only() -> None:
    reader = FakeReader(bind("RoleBinding", "alice-view", "ClusterRole", "view", [USER_ALICE], "demo"))
    authorizer = RBACAuthorizer(reader)
    reason = 'RBAC: allowed by RoleBinding "alice-view/demo" of ClusterRole "view" to User "alice"'
    assert authorizer.authorize(res("list", "pods", "demo")) == (True, reason)
    assert authorizer.authorize(res("list", "pods", "other")) == (False, "")
    assert authorizer.authorize(res("list", "secrets", "demo")) == (False, "")
    assert authorizer.authorize(res("delete", "pods", "demo", "p")) == (False, "")


def test_a_stored_cluster_role_labelled_aggregate_to_view_extends_view_edit_and_admin() -> None:
    widgets = obj(
        "ClusterRole",
        "widgets-view",
        labels={"rbac.authorization.k8s.io/aggregate-to-view": "true"},
        rules=[{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["list"]}],
    )
    bindings = [bind("RoleBinding", f"alice-{r}", "ClusterRole", r, [USER_ALICE], "demo") for r in ("view", "admin")]
    request = res("list", "widgets", "demo", api="example.com")
    assert RBACAuthorizer(FakeReader(*bindings)).authorize(request) == (False, "")
    allowed, reason = RBACAuthorizer(FakeReader(widgets, *bindings)).authorize(request)
    assert allowed
    assert reason == 'RBAC: allowed by RoleBinding "alice-admin/demo" of ClusterRole "admin" to User "alice"'


def test_a_stored_object_overrides_the_default_of_the_same_name() -> None:
    anonymous = RequestAttributes(
        UserInfo("system:anonymous", ("system:unauthenticated",)), "get", path="/healthz", resource_request=False
    )
    stored = bind(
        "ClusterRoleBinding",
        "system:public-info-viewer",
        "ClusterRole",
        "system:public-info-viewer",
        [{"apiGroup": RBAC, "kind": "Group", "name": "system:authenticated"}],
    )
    assert RBACAuthorizer(FakeReader()).authorize(anonymous)[0] is True
    assert RBACAuthorizer(FakeReader(stored)).authorize(anonymous) == (False, "")


def test_a_binding_to_a_missing_role_denies_with_the_lookup_error() -> None:
    reader = FakeReader(
        bind("ClusterRoleBinding", "alice-nope", "ClusterRole", "nope", [USER_ALICE]),
        bind("RoleBinding", "alice-gone", "Role", "gone", [USER_ALICE], "demo"),
    )
    assert RBACAuthorizer(reader).authorize(res("get", "pods", "")) == (
        False,
        'RBAC: clusterrole.rbac.authorization.k8s.io "nope" not found',
    )
    assert RBACAuthorizer(reader).authorize(res("get", "pods", "demo")) == (
        False,
        'RBAC: [clusterrole.rbac.authorization.k8s.io "nope" not found, '
        'role.rbac.authorization.k8s.io "gone" not found]',
    )


def test_a_role_binding_resolves_its_role_in_its_own_namespace() -> None:
    role = obj("Role", "reader", "demo", rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])
    reader = FakeReader(role, bind("RoleBinding", "r", "Role", "reader", [USER_ALICE], "other"))
    assert RBACAuthorizer(reader).authorize(res("get", "pods", "other", "p")) == (
        False,
        'RBAC: role.rbac.authorization.k8s.io "reader" not found',
    )


def test_a_service_account_subject_without_namespace_means_the_binding_namespace() -> None:
    role = obj("Role", "reader", "demo", rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])
    subject = {"kind": "ServiceAccount", "name": "bot"}
    reader = FakeReader(role, bind("RoleBinding", "r", "Role", "reader", [subject], "demo"))
    bot = UserInfo("system:serviceaccount:demo:bot", ("system:serviceaccounts",))
    assert RBACAuthorizer(reader).authorize(res("get", "pods", "demo", "p", user=bot)) == (
        True,
        'RBAC: allowed by RoleBinding "r/demo" of Role "reader" to ServiceAccount "bot/demo"',
    )
    other = UserInfo("system:serviceaccount:other:bot", ("system:serviceaccounts",))
    assert RBACAuthorizer(reader).authorize(res("get", "pods", "demo", "p", user=other)) == (False, "")


class Fixed:
    def __init__(self, allowed: bool, reason: str) -> None:
        self.decision = (allowed, reason)

    def authorize(self, attrs: RequestAttributes) -> tuple[bool, str]:
        return self.decision


def test_union_returns_the_first_allow_and_joins_the_reasons_of_no_opinions() -> None:
    attrs = res("get", "pods")
    assert union(Fixed(False, "a"), Fixed(True, "b"), Fixed(True, "c")).authorize(attrs) == (True, "b")
    assert union(Fixed(False, "a"), Fixed(False, ""), Fixed(False, "c")).authorize(attrs) == (False, "a\nc")


def test_build_authorizer_follows_the_mode_flag() -> None:
    masters = RequestAttributes(UserInfo("root", ("system:masters",)), "delete", resource="nodes", name="n")
    assert build_authorizer("AlwaysDeny", FakeReader()).authorize(masters) == (True, "")
    assert build_authorizer("AlwaysDeny", FakeReader()).authorize(res("get", "pods")) == (
        False,
        "Everything is forbidden.",
    )
    assert build_authorizer(["RBAC"], FakeReader()).authorize(res("get", "pods")) == (False, "")
    with pytest.raises(ValueError, match="unknown authorization mode ABAC specified"):
        build_authorizer("Node,ABAC", FakeReader())
