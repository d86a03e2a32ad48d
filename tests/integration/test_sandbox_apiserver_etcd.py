"""Two emulated kube-apiservers on one real etcd, as the control-plane nodes of an HA cluster share theirs.

The node's etcd runs with kubeadm's TLS (the certificates the certs phase generated); both API servers reach it
with apiserver-etcd-client, the tests read it with etcd's own ``etcdctl`` and the healthcheck-client
certificate. What is checked: an object written through one server is read, updated and watched through the
other; the bytes under ``/registry/...`` decode to the object (apiVersion, kind, metadata; no resourceVersion,
which is the key's mod_revision); AlreadyExists and Conflict across servers; a watch resumed from a
resourceVersion; selectors on watch events; bookmarks; a list paged over more objects than the page at one
revision, continued through the other server; 410 Expired past a compaction (etcd compacted by the test);
an API server that waits for etcd, /readyz following etcd, and objects kept when etcd restarts.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch

from kubeboot.sandbox.informer import Informer

pytestmark = pytest.mark.integration
ADDRESS = "127.0.52.1"
RBAC = "rbac.authorization.k8s.io"
DEADLINE = 30.0  # bound of the waits below; never a timing assertion


@dataclass
class Cluster:
    root: Path
    a: Any  # conftest's EmulatedApiServer: the first control-plane node's API server
    b: Any  # the second one, on the same etcd
    etcd: Any  # conftest's EtcdServer

    def api(self, server: Any, conf: str = "admin.conf") -> client.ApiClient:
        api = config.new_client_from_config(config_file=str(self.root / "etc/kubernetes" / conf))
        api.configuration.host = f"https://{server.address}:{server.port}"
        return api

    def core(self, server: Any, conf: str = "admin.conf") -> client.CoreV1Api:
        return client.CoreV1Api(self.api(server, conf))

    def stored(self, key: str) -> tuple[dict[str, Any], int]:
        """(the decoded value, its mod_revision) of ``key``, read with etcdctl."""
        done = self.etcd.etcdctl("get", key, "-w", "json")
        assert done.returncode == 0, done.stderr.decode()
        kvs = json.loads(done.stdout).get("kvs") or []
        assert len(kvs) == 1, f"{key} not in etcd"
        return json.loads(base64.b64decode(kvs[0]["value"])), int(kvs[0]["mod_revision"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, emulated_apiserver: Any,
            node_phases: Any) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("node")
    ports = [free_port() for _ in range(2)]
    cfg = node_phases.pki_node(root, ADDRESS, ports[0])
    argv = emulated_apiserver.argv(cfg, root)
    a = emulated_apiserver.start(root, argv, ADDRESS, ports[0], root / "a.log")
    b = emulated_apiserver.start(root, [f"--secure-port={ports[1]}" if x.startswith("--secure-port=") else x
                                        for x in argv], ADDRESS, ports[1], root / "b.log")
    c = Cluster(root, a, b, emulated_apiserver.etcd(root, ADDRESS))
    node_phases.bind_cluster_admins(c.api(a, "super-admin.conf"))
    yield c


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return int(s.getsockname()[1])


def namespace(c: Cluster, name: str) -> str:
    c.core(c.a).create_namespace({"metadata": {"name": name}})
    return name


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}


def api_error(fn: Any, *args: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(client.ApiException) as e:
        fn(*args, **kw)
    return e.value.status, json.loads(e.value.body)


# --- one cluster, two API servers --------------------------------------------------------------------------


def test_an_object_written_through_one_api_server_is_read_and_updated_through_the_other(cluster: Cluster) -> None:
    made = cluster.core(cluster.a).create_namespaced_config_map("default", cm("shared"))
    seen = cluster.core(cluster.b).read_namespaced_config_map("shared", "default")
    assert (seen.metadata.uid, seen.metadata.resource_version) == (made.metadata.uid, made.metadata.resource_version)
    seen.data = {"k": "changed"}
    changed = cluster.core(cluster.b).replace_namespaced_config_map("shared", "default", seen)
    back = cluster.core(cluster.a).read_namespaced_config_map("shared", "default")
    assert (back.data, back.metadata.resource_version) == ({"k": "changed"}, changed.metadata.resource_version)
    assert int(changed.metadata.resource_version) > int(made.metadata.resource_version)


def test_the_bytes_under_registry_decode_to_the_object_and_its_revision_is_the_resource_version(
        cluster: Cluster) -> None:
    made = cluster.core(cluster.a).create_namespaced_config_map("kube-public", cm("stored", tier="web"))
    value, revision = cluster.stored("/registry/configmaps/kube-public/stored")
    assert (value["apiVersion"], value["kind"]) == ("v1", "ConfigMap")
    assert value["metadata"]["uid"] == made.metadata.uid
    assert (value["metadata"]["name"], value["metadata"]["namespace"]) == ("stored", "kube-public")
    assert value["metadata"]["labels"] == {"tier": "web"}
    assert "resourceVersion" not in value["metadata"]
    assert str(revision) == made.metadata.resource_version


@pytest.mark.parametrize(("key", "api_version", "kind"), [
    pytest.param("/registry/minions/n-stored", "v1", "Node", id="a-node-under-minions"),
    pytest.param("/registry/services/specs/default/kubernetes", "v1", "Service", id="a-service-under-specs"),
    pytest.param("/registry/namespaces/kube-system", "v1", "Namespace", id="a-namespace"),
    pytest.param("/registry/clusterrolebindings/kubeadm:cluster-admins", f"{RBAC}/v1", "ClusterRoleBinding",
                 id="a-cluster-role-binding"),
    pytest.param("/registry/leases/kube-system/l-stored", "coordination.k8s.io/v1", "Lease", id="a-lease"),
])
def test_each_kind_is_stored_under_kube_apiservers_key_in_its_storage_version(
        cluster: Cluster, key: str, api_version: str, kind: str) -> None:
    if kind == "Node":
        cluster.core(cluster.a, "super-admin.conf").create_node({"metadata": {"name": "n-stored"}})
    if kind == "Lease":
        client.CoordinationV1Api(cluster.api(cluster.b)).create_namespaced_lease("kube-system", {
            "metadata": {"name": "l-stored"}, "spec": {"holderIdentity": "cp1"}})
    value, _ = cluster.stored(key)
    name = key.rpartition("/")[2]
    assert (value["apiVersion"], value["kind"], value["metadata"]["name"]) == (api_version, kind, name)


def test_a_create_of_a_name_the_other_server_made_is_409_already_exists(cluster: Cluster) -> None:
    cluster.core(cluster.a).create_namespaced_config_map("default", cm("once"))
    code, body = api_error(cluster.core(cluster.b).create_namespaced_config_map, "default", cm("once"))
    assert (code, body["reason"], body["message"]) == (409, "AlreadyExists", 'configmaps "once" already exists')


def test_a_lease_update_with_the_resource_version_the_other_server_replaced_is_409_conflict(cluster: Cluster) -> None:
    on_a = client.CoordinationV1Api(cluster.api(cluster.a))
    on_b = client.CoordinationV1Api(cluster.api(cluster.b))
    on_a.create_namespaced_lease("kube-system", {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a"}})
    read_by_a = on_a.read_namespaced_lease("leader", "kube-system")
    read_by_b = on_b.read_namespaced_lease("leader", "kube-system")
    read_by_b.spec.holder_identity = "b"
    on_b.replace_namespaced_lease("leader", "kube-system", read_by_b)
    read_by_a.spec.holder_identity = "a-again"
    code, body = api_error(on_a.replace_namespaced_lease, "leader", "kube-system", read_by_a)
    assert (code, body["reason"]) == (409, "Conflict")
    assert on_a.read_namespaced_lease("leader", "kube-system").spec.holder_identity == "b"


# --- watch --------------------------------------------------------------------------------------------------


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"].metadata.name) for e in events]


def test_a_watch_resumed_from_a_resource_version_gets_exactly_the_later_changes(cluster: Cluster) -> None:
    ns = namespace(cluster, "resume")
    on_a, on_b = cluster.core(cluster.a), cluster.core(cluster.b)
    start = on_a.create_namespaced_config_map(ns, cm("w1")).metadata.resource_version
    on_b.create_namespaced_config_map(ns, cm("w2"))
    on_b.patch_namespaced_config_map("w1", ns, {"data": {"k": "patched"}})
    on_a.delete_namespaced_config_map("w2", ns)
    events = list(watch.Watch().stream(on_a.list_namespaced_config_map, ns, resource_version=start,
                                       timeout_seconds=1))
    assert summary(events) == [("ADDED", "w2"), ("MODIFIED", "w1"), ("DELETED", "w2")]
    revisions = [int(e["object"].metadata.resource_version) for e in events]
    assert revisions == sorted(revisions)
    assert revisions[0] > int(start)
    assert events[1]["object"].data == {"k": "patched"}


def test_a_watch_without_resource_version_starts_with_the_current_objects(cluster: Cluster) -> None:
    ns = namespace(cluster, "initial")
    for name in ("i1", "i2"):
        cluster.core(cluster.b).create_namespaced_config_map(ns, cm(name))
    events = list(watch.Watch().stream(cluster.core(cluster.a).list_namespaced_config_map, ns, timeout_seconds=1))
    assert summary(events) == [("ADDED", "i1"), ("ADDED", "i2")]


def test_a_watch_on_one_server_sees_changes_through_the_other_as_they_happen_filtered_by_its_selector(
        cluster: Cluster) -> None:
    ns = namespace(cluster, "live")
    on_b = cluster.core(cluster.b)
    seen: list[dict[str, Any]] = []
    stream = watch.Watch()

    def follow() -> None:
        for event in stream.stream(cluster.core(cluster.a).list_namespaced_config_map, ns, label_selector="tier=web",
                                   timeout_seconds=int(DEADLINE)):
            seen.append(event)
            if len(seen) == 3:
                stream.stop()

    reader = threading.Thread(target=follow)
    reader.start()
    time.sleep(0.5)  # the watch is open (a change before it would come as ADDED all the same)
    on_b.create_namespaced_config_map(ns, cm("web1", tier="web"))
    on_b.create_namespaced_config_map(ns, cm("db1", tier="db"))  # never matches: not sent
    on_b.patch_namespaced_config_map("db1", ns, {"metadata": {"labels": {"tier": "web"}}})  # starts matching
    on_b.patch_namespaced_config_map("web1", ns, {"metadata": {"labels": {"tier": "db"}}})  # stops matching
    reader.join(timeout=DEADLINE)
    assert summary(seen) == [("ADDED", "web1"), ("ADDED", "db1"), ("DELETED", "web1")]


def test_a_quiet_watch_with_bookmarks_gets_a_bookmark_from_etcds_progress_notification(cluster: Cluster) -> None:
    ns = namespace(cluster, "quiet")
    rv = cluster.core(cluster.a).create_namespaced_config_map(ns, cm("q")).metadata.resource_version
    stream = watch.Watch()
    seen = []
    # kubeadm's etcd sends a progress notification every 5s on a quiet watch (bounded by the timeout).
    for event in stream.stream(cluster.core(cluster.a).list_namespaced_config_map, ns, resource_version=rv,
                               allow_watch_bookmarks=True, timeout_seconds=15):
        seen.append(event)
        stream.stop()
    assert [e["type"] for e in seen] == ["BOOKMARK"]
    assert int(seen[0]["raw_object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_the_sandbox_informer_lists_then_follows_changes_made_through_the_other_server(cluster: Cluster) -> None:
    """sandbox.informer, what the sandbox kubelet and controllers watch with: its cache follows the API."""
    ns = namespace(cluster, "informed")
    on_b = cluster.core(cluster.b)
    on_b.create_namespaced_config_map(ns, cm("before"))
    informer = Informer(lambda: contextlib.nullcontext(cluster.api(cluster.a)), f"/api/v1/namespaces/{ns}/configmaps")
    informer.start()
    try:
        wait(informer.synced.is_set, "the informer's first list")
        assert [o["metadata"]["name"] for o in informer.items()] == ["before"]
        informer.changed.clear()
        on_b.create_namespaced_config_map(ns, cm("after"))
        on_b.delete_namespaced_config_map("before", ns)
        wait(lambda: [o["metadata"]["name"] for o in informer.items()] == ["after"], "the informer to follow")
        assert informer.changed.is_set()
        assert informer.get(ns, "after")["data"] == {"k": "v"}
    finally:
        informer.stop()


# --- pagination ---------------------------------------------------------------------------------------------


def test_a_list_pages_over_more_objects_than_the_page_at_the_first_pages_revision(cluster: Cluster) -> None:
    ns = namespace(cluster, "paged")
    on_a, on_b = cluster.core(cluster.a), cluster.core(cluster.b)
    for i in range(7):
        on_a.create_namespaced_config_map(ns, cm(f"p{i}"))
    first = on_a.list_namespaced_config_map(ns, limit=3)
    assert [i.metadata.name for i in first.items] == ["p0", "p1", "p2"]
    assert first.metadata.remaining_item_count == 4
    on_a.create_namespaced_config_map(ns, cm("p9-late"))  # after the first page: not in this list
    on_a.delete_namespaced_config_map("p5", ns)  # deleted after the first page: still in this list
    second = on_b.list_namespaced_config_map(ns, limit=3, _continue=first.metadata._continue)  # the other server
    third = on_a.list_namespaced_config_map(ns, limit=3, _continue=second.metadata._continue)
    assert [i.metadata.name for i in second.items] == ["p3", "p4", "p5"]
    assert [i.metadata.name for i in third.items] == ["p6"]
    assert third.metadata._continue is None
    assert {first.metadata.resource_version, second.metadata.resource_version,
            third.metadata.resource_version} == {first.metadata.resource_version}
    fresh = [i.metadata.name for i in on_b.list_namespaced_config_map(ns).items]
    assert fresh == ["p0", "p1", "p2", "p3", "p4", "p6", "p9-late"]


def test_a_page_filled_through_a_selector_skips_what_does_not_match(cluster: Cluster) -> None:
    ns = namespace(cluster, "sparse")
    for i in range(6):
        cluster.core(cluster.a).create_namespaced_config_map(ns, cm(f"s{i}", tier="web" if i % 3 == 0 else "db"))
    page = cluster.core(cluster.b).list_namespaced_config_map(ns, limit=2, label_selector="tier=web")
    assert [i.metadata.name for i in page.items] == ["s0", "s3"]
    assert page.metadata.remaining_item_count is None  # unknown with a selector, as the real server says


def test_a_continue_token_that_is_not_one_is_400(cluster: Cluster) -> None:
    code, body = api_error(cluster.core(cluster.a).list_namespaced_config_map, "default", limit=1, _continue="x")
    assert (code, body["reason"]) == (400, "BadRequest")
    assert body["message"].startswith("invalid continue token: continue key is not valid")


# --- etcd coming and going ----------------------------------------------------------------------------------


def test_readyz_follows_etcd_and_the_cluster_outlives_an_etcd_restart(cluster: Cluster) -> None:
    kept = cluster.core(cluster.a).create_namespaced_config_map("default", cm("kept"))
    cluster.etcd.stop()
    code, body = cluster.a.status("/readyz")
    assert code == 500
    assert b"[-]etcd failed: reason withheld" in body
    code, status = api_error(cluster.core(cluster.b).read_namespaced_config_map, "kept", "default")
    assert (code, status["reason"]) == (500, "InternalError")
    cluster.etcd.start()
    wait(lambda: cluster.a.status("/readyz")[0] == 200 and cluster.b.status("/readyz")[0] == 200, "readyz after etcd")
    again = cluster.core(cluster.b).read_namespaced_config_map("kept", "default")
    assert again.metadata.uid == kept.metadata.uid


def test_an_api_server_started_before_etcd_waits_for_it_and_says_so(cluster: Cluster) -> None:
    cluster.etcd.stop()
    port = free_port()
    log = cluster.root / "late.log"
    argv = [f"--secure-port={port}" if a.startswith("--secure-port=") else a for a in cluster.a.argv]
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kubeboot.sandbox.apiserver", *argv], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait(lambda: "waiting for etcd at " in log.read_text(), "the waiting line")
        assert "Serving securely" not in log.read_text()
        cluster.etcd.start()
        wait(lambda: "Serving securely on" in log.read_text(), "the server to start once etcd answers")
        assert "answers (revision " in log.read_text()
    finally:
        proc.terminate()
        assert proc.wait(timeout=DEADLINE) == 0, log.read_text()
    wait(lambda: cluster.a.status("/readyz")[0] == 200, "readyz of the first server")


def wait(ready: Any, what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not ready():
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting {DEADLINE:.0f}s for {what}")
        time.sleep(0.1)


# --- compaction (last: it drops the history the tests above may still hold revisions of) ------------------


def test_past_a_compaction_a_watch_ends_with_410_expired_and_a_continue_token_offers_to_go_on(
        cluster: Cluster) -> None:
    ns = namespace(cluster, "compacted")
    on_a = cluster.core(cluster.a)
    made = [on_a.create_namespaced_config_map(ns, cm(f"c{i}")).metadata.resource_version for i in range(4)]
    first = on_a.list_namespaced_config_map(ns, limit=2)
    on_a.create_namespaced_config_map(ns, cm("c9"))
    current = on_a.list_namespaced_config_map(ns).metadata.resource_version
    done = cluster.etcd.etcdctl("compact", current)
    assert done.returncode == 0, done.stderr.decode()

    with pytest.raises(client.ApiException) as e:
        list(watch.Watch().stream(on_a.list_namespaced_config_map, ns, resource_version=made[0], timeout_seconds=5))
    assert e.value.status == 410
    assert "Expired" in str(e.value.reason)

    code, status = api_error(cluster.core(cluster.b).list_namespaced_config_map, ns, limit=2,
                             _continue=first.metadata._continue)
    assert (code, status["reason"]) == (410, "Expired")
    assert status["message"].startswith("The provided continue parameter is too old")
    rest = on_a.list_namespaced_config_map(ns, limit=10, _continue=status["metadata"]["continue"])
    assert [i.metadata.name for i in rest.items] == ["c2", "c3", "c9"]  # at the latest revision: c9 too
    code, status = api_error(on_a.list_namespaced_config_map, ns, limit=2,
                             resource_version=first.metadata.resource_version, resource_version_match="Exact")
    assert (code, status["reason"], status["message"]) == (410, "Expired",
                                                          "The resourceVersion for the provided list is too old.")
