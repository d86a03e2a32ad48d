"""The emulated API server's pure request logic: label and field selectors, URL routing, health paths,
discovery, the etcd key layout and the continue tokens of paginated lists."""

from __future__ import annotations

import base64
import json

import pytest

from kubeboot.sandbox.apiserver import etcd, keys, routes, selectors, watch
from kubeboot.sandbox.apiserver.errors import ApiError


def error(fn, *args, **kw) -> ApiError:
    with pytest.raises(ApiError) as e:
        fn(*args, **kw)
    return e.value


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


def test_a_failing_check_fails_its_endpoints_with_the_reason_withheld_from_the_listing() -> None:
    code, text = routes.health("/readyz", False, {"etcd": "connection refused"}) or (0, "")
    assert code == 500
    assert "[-]etcd failed: reason withheld\n" in text
    assert "[+]ping ok\n" in text
    assert text.endswith("readyz check failed")
    assert routes.health("/livez/etcd", False, {"etcd": "connection refused"}) == (
        500, "internal server error: connection refused\n")
    assert routes.health("/livez/ping", False, {"etcd": "connection refused"}) == (200, "ok")


@pytest.mark.parametrize(("method", "path", "watch", "verb"), [
    pytest.param("GET", "/api/v1/namespaces/a/configmaps", False, "list", id="a-list"),
    pytest.param("GET", "/api/v1/namespaces/a/configmaps", True, "watch", id="a-watch-of-a-collection"),
    pytest.param("GET", "/api/v1/namespaces/a/configmaps/x", True, "watch", id="a-watch-of-one-object"),
    pytest.param("GET", "/api/v1/namespaces/a/configmaps/x", False, "get", id="a-get"),
    pytest.param("DELETE", "/api/v1/namespaces/a/configmaps", False, "deletecollection", id="a-deletecollection"),
])
def test_the_verb_of_a_request_is_the_one_rbac_sees(method: str, path: str, watch: bool, verb: str) -> None:
    assert routes.parse(path).verb(method, watch) == verb


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


# --- the etcd key layout (k8s.io/kubernetes pkg/kubeapiserver/default_storage_factory_builder.go) ------


@pytest.mark.parametrize(("resource", "ns", "name", "key"), [
    pytest.param("/nodes", "", "cp1", "/registry/minions/cp1", id="nodes-keep-their-historical-name"),
    pytest.param("/services", "default", "kubernetes", "/registry/services/specs/default/kubernetes",
                 id="services-under-specs"),
    pytest.param("/endpoints", "default", "kubernetes", "/registry/services/endpoints/default/kubernetes",
                 id="endpoints-beside-services"),
    pytest.param("/configmaps", "kube-system", "kubeadm-config", "/registry/configmaps/kube-system/kubeadm-config",
                 id="a-namespaced-core-object"),
    pytest.param("/namespaces", "", "kube-system", "/registry/namespaces/kube-system", id="a-namespace"),
    pytest.param("apps/deployments", "kube-system", "coredns", "/registry/deployments/kube-system/coredns",
                 id="a-group-object-without-its-group"),
    pytest.param("rbac.authorization.k8s.io/clusterroles", "", "system:node",
                 "/registry/clusterroles/system:node", id="a-cluster-role"),
    pytest.param("certificates.k8s.io/certificatesigningrequests", "", "csr-1",
                 "/registry/certificatesigningrequests/csr-1", id="a-csr"),
    pytest.param("coordination.k8s.io/leases", "kube-system", "kube-scheduler",
                 "/registry/leases/kube-system/kube-scheduler", id="a-lease"),
])
def test_objects_are_kept_under_kube_apiservers_own_keys(resource: str, ns: str, name: str, key: str) -> None:
    assert keys.object_key("/registry", resource, ns, name) == key


def test_a_list_reads_one_namespace_or_all_of_them_under_a_prefix_ending_in_a_slash() -> None:
    assert keys.list_prefix("/registry", "/pods", "kube-system") == "/registry/pods/kube-system/"
    assert keys.list_prefix("/registry", "/pods") == "/registry/pods/"
    assert keys.list_prefix("/other/", "/nodes") == "/other/minions/"
    assert etcd.prefix_end("/registry/pods/") == "/registry/pods0"


# --- continue tokens (k8s.io/apiserver/pkg/storage/continue.go) ----------------------------------------


def test_a_continue_token_is_the_real_servers_encoding() -> None:
    token = keys.encode_continue("/registry/configmaps/default/cm2\0", "/registry/configmaps/default/", 12)
    assert token == "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTIsInN0YXJ0IjoiY20yXHUwMDAwIn0"  # as kube-apiserver sends
    assert keys.decode_continue(token, "/registry/configmaps/default/") == ("/registry/configmaps/default/cm2\0", 12)


def b64url(doc: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(("token", "message"), [
    pytest.param("%%%", "continue key is not valid", id="not-base64"),
    pytest.param(b64url({"v": "meta.k8s.io/v2", "rv": 1, "start": "a"}),
                 "continue key is not valid: server does not recognize this encoded version meta.k8s.io/v2",
                 id="another-version"),
    pytest.param(b64url({"v": "meta.k8s.io/v1", "rv": 0, "start": "a"}),
                 "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
                 id="no-revision"),
    pytest.param(b64url({"v": "meta.k8s.io/v1", "rv": 3, "start": ""}),
                 "continue key is not valid: encoded start key empty (version meta.k8s.io/v1)", id="no-start"),
    pytest.param(b64url({"v": "meta.k8s.io/v1", "rv": 3, "start": "../secrets/x"}),
                 "continue key is not valid: ../secrets/x", id="a-path-out-of-the-prefix"),
])
def test_a_continue_token_the_server_cannot_read_is_refused_with_the_real_message(token: str, message: str) -> None:
    with pytest.raises(keys.InvalidContinue) as e:
        keys.decode_continue(token, "/registry/configmaps/default/")
    assert str(e.value).startswith(message)


# --- watch events from etcd events (k8s.io/apiserver/pkg/storage/etcd3/watcher.go) ---------------------


def kv(name: str, created: int, modified: int, tier: str = "web") -> etcd.KV:
    doc = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": name, "labels": {"tier": tier}}}
    return etcd.KV(f"/registry/configmaps/default/{name}", json.dumps(doc).encode(), created, modified)


WEB = selectors.label_selector("tier=web")


@pytest.mark.parametrize(("event", "match", "expected"), [
    pytest.param(etcd.Event("PUT", kv("a", 5, 5), None), None, ("ADDED", "5"), id="a-create-is-added"),
    pytest.param(etcd.Event("PUT", kv("a", 5, 7), kv("a", 5, 5)), None, ("MODIFIED", "7"), id="a-change-is-modified"),
    pytest.param(etcd.Event("DELETE", etcd.KV("/registry/configmaps/default/a", b"", 0, 9), kv("a", 5, 7)), None,
                 ("DELETED", "9"), id="a-delete-carries-the-last-state-at-the-deletions-revision"),
    pytest.param(etcd.Event("PUT", kv("a", 5, 7, "db"), kv("a", 5, 5)), WEB, ("DELETED", "7"),
                 id="leaving-the-selector-is-deleted"),
    pytest.param(etcd.Event("PUT", kv("a", 5, 7), kv("a", 5, 5, "db")), WEB, ("ADDED", "7"),
                 id="entering-the-selector-is-added"),
    pytest.param(etcd.Event("PUT", kv("a", 5, 7, "db"), kv("a", 5, 5, "db")), WEB, None,
                 id="outside-the-selector-is-not-sent"),
])
def test_etcd_events_become_the_watch_events_a_client_sees(event: etcd.Event, match: object,
                                                           expected: tuple[str, str] | None) -> None:
    got = watch.translate(event, match)  # type: ignore[arg-type]
    assert (None if got is None else (got["type"], got["object"]["metadata"]["resourceVersion"])) == expected
