"""PATCH on the emulated API server, stored in a real etcd: strategic merge with the kinds' merge keys, merge
and JSON patches, the content types and errors of the real server; and list filtering by selectors."""

from __future__ import annotations

import ipaddress
import json

import pytest

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


pytestmark = pytest.mark.integration


@pytest.fixture
def reg(store: Store) -> Registry:
    r = Registry(store, ipaddress.ip_network("10.96.0.0/12"), AllowAll())
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


def test_a_list_filters_by_selectors_and_carries_the_store_resource_version(reg: Registry) -> None:
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web")):
        reg.create(CM, "default", {"metadata": {"name": name, "labels": {"tier": tier}}}, ADMIN)
    listed = reg.list(CM, "default", "tier=web", "metadata.name!=c")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    assert (listed["kind"], listed["apiVersion"]) == ("ConfigMapList", "v1")
    assert listed["metadata"]["resourceVersion"] == reg.store.resource_version()
    assert "kind" not in listed["items"][0]
