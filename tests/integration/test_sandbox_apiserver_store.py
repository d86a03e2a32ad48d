"""The emulated API server's store on a real etcd: metadata the server owns, resourceVersion as the etcd
revision, AlreadyExists and Conflict as transactions decide them, names, and the bytes kept under /registry."""

from __future__ import annotations

import json
import re
import threading

import pytest

from kubeboot.sandbox.apiserver.errors import ApiError
from kubeboot.sandbox.apiserver.store import SYSTEM_NAMESPACES, Store

CM = "/configmaps"


def cm(name: str, ns: str = "default", **data: str) -> dict:
    return {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns}, "data": data}


pytestmark = pytest.mark.integration


def error(fn, *args, **kw) -> ApiError:
    with pytest.raises(ApiError) as e:
        fn(*args, **kw)
    return e.value


def test_the_four_system_namespaces_exist_from_the_first_start(store: Store) -> None:
    names = [ns["metadata"]["name"] for ns in store.list("/namespaces")]
    assert names == sorted(SYSTEM_NAMESPACES)
    kube_system = store.get("/namespaces", "", "kube-system")
    assert kube_system is not None
    assert kube_system["metadata"]["labels"] == {"kubernetes.io/metadata.name": "kube-system"}
    assert kube_system["status"] == {"phase": "Active"}


def test_create_sets_uid_creation_timestamp_and_the_next_global_resource_version(store: Store) -> None:
    before = int(store.resource_version())
    a = store.create(CM, cm("a"))
    b = store.create(CM, cm("b", ns="kube-system"))
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a["metadata"]["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", a["metadata"]["creationTimestamp"])
    assert (a["metadata"]["resourceVersion"], b["metadata"]["resourceVersion"]) == (str(before + 1), str(before + 2))
    assert store.resource_version() == str(before + 2)
    assert store.get(CM, "default", "a") == a


def test_creating_an_existing_name_is_409_already_exists(store: Store) -> None:
    store.create(CM, cm("a"))
    e = error(store.create, CM, cm("a"))
    assert (e.code, e.reason, e.message) == (409, "AlreadyExists", 'configmaps "a" already exists')
    assert e.status()["details"] == {"name": "a", "kind": "configmaps"}


def test_an_update_with_a_stale_resource_version_is_409_conflict(store: Store) -> None:
    first = store.create(CM, cm("a", k="1"))
    store.update(CM, {**cm("a", k="2"), "metadata": dict(first["metadata"])})
    e = error(store.update, CM, {**cm("a", k="3"), "metadata": dict(first["metadata"])})
    assert (e.code, e.reason) == (409, "Conflict")
    assert e.message == ('Operation cannot be fulfilled on configmaps "a": the object has been modified; '
                         "please apply your changes to the latest version and try again")


def test_an_update_without_resource_version_is_unconditional_and_keeps_uid_and_creation_time(store: Store) -> None:
    first = store.create(CM, cm("a", k="1"))
    second = store.update(CM, cm("a", k="2"))
    assert second["data"] == {"k": "2"}
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["creationTimestamp"] == first["metadata"]["creationTimestamp"]
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


def test_an_update_that_changes_nothing_keeps_the_resource_version(store: Store) -> None:
    first = store.create(CM, cm("a", k="1"))
    again = store.update(CM, cm("a", k="1"))
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_deployment_generation_starts_at_1_and_grows_only_when_the_spec_changes(store: Store) -> None:
    dep = {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "d", "namespace": "default"},
           "spec": {"replicas": 1}}
    assert store.create("apps/deployments", dep)["metadata"]["generation"] == 1
    labelled = store.update("apps/deployments", {**dep, "metadata": {**dep["metadata"], "labels": {"a": "b"}}})
    assert labelled["metadata"]["generation"] == 1
    scaled = {**labelled, "spec": {"replicas": 2}}
    assert store.update("apps/deployments", scaled)["metadata"]["generation"] == 2


def test_missing_objects_and_namespaces_are_404_not_found(store: Store) -> None:
    e = error(store.update, CM, cm("nope"))
    assert (e.code, e.reason, e.message) == (404, "NotFound", 'configmaps "nope" not found')
    e = error(store.create, CM, cm("a", ns="elsewhere"))
    assert (e.code, e.message) == (404, 'namespaces "elsewhere" not found')
    e = error(store.delete, "apps/deployments", "default", "d")
    assert e.message == 'deployments.apps "d" not found'
    assert e.status()["details"] == {"name": "d", "group": "apps", "kind": "deployments"}


RBAC_CR = "rbac.authorization.k8s.io/clusterroles"
CSR = "certificates.k8s.io/certificatesigningrequests"


@pytest.mark.parametrize(("resource", "ns", "name", "ok"), [
    pytest.param(CM, "default", "kubeadm-config", True, id="a-dns-subdomain-configmap-name-is-valid"),
    pytest.param(CM, "default", "Upper", False, id="an-uppercase-configmap-name-is-invalid"),
    pytest.param(CM, "default", "a" * 254, False, id="a-254-character-name-is-invalid"),
    pytest.param("/services", "default", "kube-dns", True, id="a-dns-1035-service-name-is-valid"),
    pytest.param("/services", "default", "1dns", False, id="a-service-name-starting-with-a-digit-is-invalid"),
    pytest.param(RBAC_CR, "", "system:node", True, id="rbac-names-may-hold-colons"),
    pytest.param(RBAC_CR, "", "a/b", False, id="rbac-names-may-not-hold-slashes"),
    pytest.param(CSR, "", "node-csr-AbC_d-1", True, id="csr-names-are-path-segments-like-the-kubelets-node-csr-names"),
])
def test_names_are_validated_like_the_real_registries(store: Store, resource: str, ns: str, name: str,
                                                      ok: bool) -> None:
    obj = {"kind": "X", "metadata": {"name": name, "namespace": ns}}
    if ok:
        assert store.create(resource, obj)["metadata"]["name"] == name
    else:
        e = error(store.create, resource, obj)
        assert (e.code, e.reason) == (422, "Invalid")
        assert f' "{name}" is invalid: metadata.name: Invalid value: "{name}": ' in e.message


def test_an_invalid_name_reports_the_dns_subdomain_rule_as_the_real_server_does(store: Store) -> None:
    e = error(store.create, CM, cm("Bad_Name"))
    assert e.message == (
        'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain '
        "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    assert e.status()["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "metadata.name",
                                                "message": e.message.split("metadata.name: ", 1)[1]}]


def test_generate_name_gets_a_five_character_suffix(store: Store) -> None:
    obj = store.create(CM, {"kind": "ConfigMap", "metadata": {"generateName": "csr-", "namespace": "default"}})
    assert re.fullmatch(r"csr-[bcdfghjklmnpqrstvwxz2456789]{5}", obj["metadata"]["name"])


def test_delete_checks_uid_and_resource_version_preconditions(store: Store) -> None:
    obj = store.create(CM, cm("a"))
    assert error(store.delete, CM, "default", "a", uid="other").code == 409
    assert error(store.delete, CM, "default", "a", resource_version="1").code == 409
    store.delete(CM, "default", "a", uid=obj["metadata"]["uid"])
    assert store.get(CM, "default", "a") is None


def test_dry_run_validates_without_writing(store: Store) -> None:
    rv = store.resource_version()
    assert store.create(CM, cm("a"), dry_run=True)["metadata"]["name"] == "a"
    assert store.get(CM, "default", "a") is None
    assert store.resource_version() == rv


def test_the_stored_value_is_the_objects_json_without_its_resource_version(store: Store) -> None:
    created = store.create(CM, cm("a", k="v"))
    found = store.etcd.range(store.key(CM, "default", "a")).kvs
    assert len(found) == 1
    value = json.loads(found[0].value)
    assert (value["apiVersion"], value["kind"], value["data"]) == ("v1", "ConfigMap", {"k": "v"})
    assert "resourceVersion" not in value["metadata"]
    assert value["metadata"]["uid"] == created["metadata"]["uid"]
    assert created["metadata"]["resourceVersion"] == str(found[0].mod_revision)


def test_another_store_on_the_same_etcd_reads_the_same_objects_and_revisions(store: Store) -> None:
    created = store.create(CM, cm("shared", k="v"))
    other = Store(store.etcd, store.prefix)
    assert other.get(CM, "default", "shared") == created
    assert other.create(CM, cm("next"))["metadata"]["resourceVersion"] == str(
        int(created["metadata"]["resourceVersion"]) + 1)
    e = error(other.update, CM, {**cm("shared", k="w"), "metadata": {**created["metadata"], "resourceVersion": "1"}})
    assert (e.code, e.reason) == (409, "Conflict")


def test_concurrent_patches_from_many_threads_lose_no_update(store: Store) -> None:
    store.create(CM, cm("counter", n="0"))

    def bump(obj: dict) -> dict:
        obj["data"]["n"] = str(int(obj["data"]["n"]) + 1)
        return obj

    threads = [threading.Thread(target=lambda: [store.patch(CM, "default", "counter", bump) for _ in range(20)])
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = store.get(CM, "default", "counter")
    assert final is not None
    assert final["data"]["n"] == "160"


def test_an_update_started_from_a_stale_cached_copy_is_judged_on_the_stored_object(store: Store) -> None:
    """As GuaranteedUpdate with the watch cache's copy: the transaction on the copy's revision fails, the
    stored object is read, and preconditions are checked against it, not against the copy."""
    first = store.create(CM, cm("c", k="1"))
    stale = store._read(store.key(CM, "default", "c"))
    second = store.update(CM, {**cm("c", k="2"), "metadata": dict(first["metadata"])})
    store.cache = lambda key: stale if key == store.key(CM, "default", "c") else None
    current = {**cm("c", k="3"), "metadata": {**second["metadata"]}}
    third = store.update(CM, current)  # carries the stored resourceVersion, which the copy does not have
    assert third["data"] == {"k": "3"}
    e = error(store.update, CM, {**cm("c", k="4"), "metadata": dict(first["metadata"])})
    assert (e.code, e.reason) == (409, "Conflict")
    unconditional = store.update(CM, cm("c", k="5"))
    assert int(unconditional["metadata"]["resourceVersion"]) > int(third["metadata"]["resourceVersion"])
    assert store.get(CM, "default", "c")["data"] == {"k": "5"}
    assert store.delete(CM, "default", "c", resource_version=unconditional["metadata"]["resourceVersion"])
    assert store.get(CM, "default", "c") is None
