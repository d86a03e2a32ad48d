"""PATCH on the emulated API server: strategic merge with the kinds' merge keys, merge and JSON patches,
the content types and errors of the real server; and list filtering by label and field selectors."""

from __future__ import annotations

import ipaddress
import json

import pytest

from kubeboot.sandbox.apiserver import routes, selectors
from kubeboot.sandbox.apiserver.errors import ApiError
from kubeboot.sandbox.apiserver.registry import Registry
from kubeboot.sandbox.apiserver.resources import BY_KEY
from kubeboot.sandbox.apiserver.store import Store
from kubeboot.sandbox.apiserver.types import RequestAttributes, UserInfo

SMP, MERGE, JSONP = ("application/strategic-merge-patch+json", "application/merge-patch+json",
                     "application/json-patch+json")
NODES, PODS, CM = BY_KEY["/nodes"], BY_KEY["/pods"], BY_KEY["/configmaps"]
ADMIN = UserInfo("admin", ("system:masters",))


class AllowAll:
    def authorize(self, attrs: RequestAttributes) -> tuple[bool, str]:
        return True, ""


@pytest.fixture
def reg() -> Registry:
    r = Registry(Store(), ipaddress.ip_network("10.96.0.0/12"), AllowAll())
    r.create(NODES, "", {"metadata": {"name": "n1", "labels": {"a": "1"}}, "spec": {
        "taints": [{"key": "t1", "effect": "NoSchedule"}]}, "status": {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}]}}, ADMIN)
    return r


def patch(reg: Registry, ct: str, body: object, rt=NODES, ns: str = "", name: str = "n1", sub: str = "") -> dict:
    return reg.patch(rt, ns, name, ct, json.dumps(body).encode(), sub=sub)


def error(fn, *args, **kw) -> ApiError:
    with pytest.raises(ApiError) as e:
        fn(*args, **kw)
    return e.value


def test_a_strategic_patch_merges_node_conditions_by_type(reg: Registry) -> None:
    node = patch(reg, SMP, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, sub="status")
    assert node["status"]["conditions"] == [{"type": "Ready", "status": "True"},
                                            {"type": "MemoryPressure", "status": "False"}]


def test_a_strategic_patch_merges_node_addresses_by_type(reg: Registry) -> None:
    node = patch(reg, SMP, {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}}, sub="status")
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "10.0.0.2"},
                                           {"type": "Hostname", "address": "n1"}]


def test_a_strategic_patch_replaces_node_taints_which_carry_no_merge_key(reg: Registry) -> None:
    node = patch(reg, SMP, {"spec": {"taints": [{"key": "t2", "effect": "NoExecute"}]}})
    assert node["spec"]["taints"] == [{"key": "t2", "effect": "NoExecute"}]


def test_a_strategic_patch_deletes_a_condition_with_the_patch_directive(reg: Registry) -> None:
    node = patch(reg, SMP, {"status": {"conditions": [{"type": "MemoryPressure", "$patch": "delete"}]}}, sub="status")
    assert [c["type"] for c in node["status"]["conditions"]] == ["Ready"]


def test_a_strategic_patch_merges_pod_containers_by_name(reg: Registry) -> None:
    reg.create(PODS, "kube-system", {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}, ADMIN)
    pod = patch(reg, SMP, {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}, rt=PODS, ns="kube-system",
                name="p")
    assert pod["spec"]["containers"] == [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]


def test_a_merge_patch_replaces_lists_and_deletes_keys_set_to_null(reg: Registry) -> None:
    node = patch(reg, MERGE, {"metadata": {"labels": {"a": None, "b": "2"}},
                              "status": {"conditions": [{"type": "Ready", "status": "True"}]}}, sub="status")
    assert node["metadata"]["labels"] == {"b": "2"}
    assert node["status"]["conditions"] == [{"type": "Ready", "status": "True"}]


def test_a_json_patch_applies_its_operations_in_order(reg: Registry) -> None:
    node = patch(reg, JSONP, [{"op": "add", "path": "/metadata/labels/b", "value": "2"},
                              {"op": "remove", "path": "/metadata/labels/a"}])
    assert node["metadata"]["labels"] == {"b": "2"}


def test_a_json_patch_whose_test_fails_is_422_and_changes_nothing(reg: Registry) -> None:
    rv = reg.get(NODES, "", "n1")["metadata"]["resourceVersion"]
    e = error(patch, reg, JSONP, [{"op": "test", "path": "/metadata/labels/a", "value": "9"}])
    assert (e.code, e.reason) == (422, "Invalid")
    assert reg.get(NODES, "", "n1")["metadata"]["resourceVersion"] == rv


def test_an_object_sent_as_a_json_patch_is_400_as_from_the_real_server(reg: Registry) -> None:
    e = error(patch, reg, JSONP, {"metadata": {}})
    assert (e.code, e.message) == (400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")


@pytest.mark.parametrize("ct", ["application/apply-patch+yaml", "application/json", "text/plain"])
def test_other_patch_content_types_are_415(reg: Registry, ct: str) -> None:
    assert error(patch, reg, ct, {}).code == 415


def test_a_patch_carrying_a_stale_resource_version_is_409(reg: Registry) -> None:
    e = error(patch, reg, MERGE, {"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}})
    assert (e.code, e.reason) == (409, "Conflict")


def test_a_patch_of_a_missing_object_is_404(reg: Registry) -> None:
    assert error(patch, reg, MERGE, {}, name="n2").code == 404


def test_a_patch_on_the_main_resource_leaves_the_status_alone(reg: Registry) -> None:
    node = patch(reg, MERGE, {"status": {"conditions": []}, "metadata": {"labels": {"c": "3"}}})
    assert len(node["status"]["conditions"]) == 2
    assert node["metadata"]["labels"]["c"] == "3"


def test_dry_run_patch_returns_the_result_and_stores_nothing(reg: Registry) -> None:
    node = reg.patch(NODES, "", "n1", MERGE, b'{"metadata":{"labels":{"c":"3"}}}', dry_run=True)
    assert node["metadata"]["labels"]["c"] == "3"
    assert "c" not in reg.get(NODES, "", "n1")["metadata"]["labels"]


# --- selectors --------------------------------------------------------------------------------------


def obj(labels: dict[str, str]) -> dict:
    return {"metadata": {"name": "x", "labels": labels}}


@pytest.mark.parametrize(("selector", "labels", "match"), [
    pytest.param("a=1", {"a": "1"}, True, id="equality-matches"),
    pytest.param("a==1", {"a": "2"}, False, id="double-equals-mismatch"),
    pytest.param("a!=1", {}, True, id="inequality-matches-a-missing-label"),
    pytest.param("a", {"a": ""}, True, id="existence"),
    pytest.param("!a", {"a": "1"}, False, id="non-existence"),
    pytest.param("a in (1, 2)", {"a": "2"}, True, id="set-membership"),
    pytest.param("a notin (1,2)", {"a": "3"}, True, id="set-exclusion"),
    pytest.param("a=1,b", {"a": "1"}, False, id="every-requirement-must-hold"),
    pytest.param("k8s-app=kube-dns,!node-role.kubernetes.io/control-plane", {"k8s-app": "kube-dns"}, True,
                 id="qualified-keys"),
])
def test_label_selectors_match_as_the_real_server_does(selector: str, labels: dict[str, str], match: bool) -> None:
    assert selectors.label_selector(selector)(obj(labels)) is match


def test_a_malformed_label_selector_is_400() -> None:
    assert error(selectors.label_selector, "a=(b").code == 400


def test_field_selectors_match_metadata_name_and_the_kinds_own_fields() -> None:
    pod = {"metadata": {"name": "p", "namespace": "kube-system"}, "spec": {"nodeName": "n1"}}
    assert selectors.field_selector("/pods", "spec.nodeName=n1,metadata.name=p")(pod)
    assert not selectors.field_selector("/pods", "metadata.namespace!=kube-system")(pod)
    secret = {"metadata": {"name": "s"}, "type": "bootstrap.kubernetes.io/token"}
    assert selectors.field_selector("/secrets", "type=bootstrap.kubernetes.io/token")(secret)


def test_an_unsupported_field_label_is_400() -> None:
    e = error(selectors.field_selector, "/configmaps", "data.x=1")
    assert (e.code, e.message) == (400, "unable to parse requirement: field label not supported: data.x")


def test_a_list_filters_by_selectors_and_carries_the_store_resource_version(reg: Registry) -> None:
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web")):
        reg.create(CM, "default", {"metadata": {"name": name, "labels": {"tier": tier}}}, ADMIN)
    listed = reg.list(CM, "default", "tier=web", "metadata.name!=c")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    assert (listed["kind"], listed["apiVersion"]) == ("ConfigMapList", "v1")
    assert listed["metadata"]["resourceVersion"] == reg.store.resource_version()
    assert "kind" not in listed["items"][0]


# --- routes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "expected"), [
    pytest.param("/api/v1/namespaces/kube-system/configmaps/kubeadm-config",
                 ("/configmaps", "kube-system", "kubeadm-config", ""), id="a-namespaced-object"),
    pytest.param("/api/v1/namespaces/kube-system", ("/namespaces", "", "kube-system", ""), id="a-namespace"),
    pytest.param("/api/v1/namespaces/kube-system/status", ("/namespaces", "", "kube-system", "status"),
                 id="a-namespaces-status"),
    pytest.param("/api/v1/nodes/n1/status", ("/nodes", "", "n1", "status"), id="a-node-status"),
    pytest.param("/api/v1/pods", ("/pods", "", "", ""), id="pods-across-namespaces"),
    pytest.param("/apis/certificates.k8s.io/v1/certificatesigningrequests/c/approval",
                 ("certificates.k8s.io/certificatesigningrequests", "", "c", "approval"), id="a-csr-approval"),
    pytest.param("/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy",
                 ("apps/daemonsets", "kube-system", "kube-proxy", ""), id="a-daemonset"),
])
def test_paths_route_to_resource_namespace_name_and_subresource(path: str, expected: tuple[str, ...]) -> None:
    r = routes.parse(path)
    assert (r.rt.key, r.namespace, r.name, r.sub) == expected


@pytest.mark.parametrize("path", ["/api/v1/widgets", "/api/v1/namespaces/a/nodes/n1", "/api/v1/configmaps/x",
                                  "/apis/apps/v2/deployments", "/api/v1/nodes/n1/status/extra"])
def test_paths_the_server_does_not_serve_are_404(path: str) -> None:
    e = error(routes.parse, path)
    assert (e.code, e.message) == (404, "the server could not find the requested resource")


def test_health_endpoints_answer_ok_and_list_their_checks_when_verbose() -> None:
    assert routes.health("/livez", False) == (200, "ok")
    code, text = routes.health("/readyz", True) or (0, "")
    assert code == 200
    assert text.startswith("[+]ping ok\n")
    assert text.endswith("readyz check passed\n")
    assert routes.health("/livez/ping", False) == (200, "ok")
    assert routes.health("/livez/nope", False) == (404, "404 page not found\n")
    assert routes.health("/metrics", False) is None


def test_discovery_lists_every_group_and_the_resources_of_a_group_version() -> None:
    groups = routes.non_resource("/apis", "127.0.0.1:6443")
    assert [g["name"] for g in groups["groups"]] == ["apps", "rbac.authorization.k8s.io", "certificates.k8s.io",
                                                     "coordination.k8s.io", "authorization.k8s.io",
                                                     "authentication.k8s.io"]
    core = routes.non_resource("/api/v1", "127.0.0.1:6443")
    names = {r["name"]: r for r in core["resources"]}
    assert names["configmaps"]["shortNames"] == ["cm"]
    assert names["nodes/status"]["verbs"] == ["get", "patch", "update"]
    assert not names["nodes"]["namespaced"]
    csr = routes.non_resource("/apis/certificates.k8s.io/v1", "x")
    assert {r["name"] for r in csr["resources"]} == {
        "certificatesigningrequests", "certificatesigningrequests/approval", "certificatesigningrequests/status"}
