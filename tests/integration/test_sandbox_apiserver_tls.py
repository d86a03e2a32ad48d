"""The emulated kube-apiserver as a process, with the PKI and kubeconfigs of the real certs and kubeconfig
phases, spoken to by the official ``kubernetes`` client over TLS."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from kubeboot.tasks import pki

pytestmark = pytest.mark.integration
ADDRESS = "127.0.50.1"
PKI = "etc/kubernetes/pki"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return int(s.getsockname()[1])


ApiServer = Any  # conftest's EmulatedApiServer (a conftest is not importable under importlib mode)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, emulated_apiserver: Any,
           node_phases: Any) -> Iterator[ApiServer]:
    root = tmp_path_factory.mktemp("node")
    port = free_port()
    cfg = node_phases.pki_node(root, ADDRESS, port)
    api = emulated_apiserver.start(root, emulated_apiserver.argv(cfg, root), ADDRESS, port)
    yield api
    assert api.stop() == 0


def core(api: ApiServer, conf: str = "super-admin.conf") -> client.CoreV1Api:
    return client.CoreV1Api(api.client(conf))


def api_error(fn: Any, *args: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(client.ApiException) as e:
        fn(*args, **kw)
    return e.value.status, json.loads(e.value.body)


def test_the_official_client_lists_the_system_namespaces_over_tls(server: ApiServer) -> None:
    names = {ns.metadata.name for ns in core(server).list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_a_configmap_is_created_read_updated_patched_and_deleted(server: ApiServer) -> None:
    v1 = core(server)
    made = v1.create_namespaced_config_map("kube-system", {"metadata": {"name": "life"}, "data": {"a": "1"}})
    assert v1.read_namespaced_config_map("life", "kube-system").data == {"a": "1"}
    made.data = {"a": "2"}
    updated = v1.replace_namespaced_config_map("life", "kube-system", made)
    assert int(updated.metadata.resource_version) > int(made.metadata.resource_version)
    patched = v1.patch_namespaced_config_map("life", "kube-system", {"data": {"b": "3"}},
                                             _content_type="application/strategic-merge-patch+json")
    assert patched.data == {"a": "2", "b": "3"}
    patched = v1.patch_namespaced_config_map("life", "kube-system", [{"op": "remove", "path": "/data/a"}])
    assert patched.data == {"b": "3"}
    status = v1.delete_namespaced_config_map("life", "kube-system")
    assert (status.status, status.details.name) == ("Success", "life")
    code, body = api_error(v1.read_namespaced_config_map, "life", "kube-system")
    assert (code, body["reason"], body["message"]) == (404, "NotFound", 'configmaps "life" not found')


def test_a_duplicate_create_and_a_stale_update_are_409_with_the_real_reasons(server: ApiServer) -> None:
    v1 = core(server)
    first = v1.create_namespaced_config_map("default", {"metadata": {"name": "dup"}, "data": {"k": "1"}})
    code, body = api_error(v1.create_namespaced_config_map, "default", {"metadata": {"name": "dup"}})
    assert (code, body["kind"], body["status"], body["reason"]) == (409, "Status", "Failure", "AlreadyExists")
    assert body["details"] == {"name": "dup", "kind": "configmaps"}
    v1.replace_namespaced_config_map("dup", "default", {"metadata": {"name": "dup"}, "data": {"k": "2"}})
    code, body = api_error(v1.replace_namespaced_config_map, "dup", "default", first)
    assert (code, body["reason"]) == (409, "Conflict")


def test_an_invalid_name_is_422_invalid(server: ApiServer) -> None:
    code, body = api_error(core(server).create_namespaced_config_map, "default", {"metadata": {"name": "Bad"}})
    assert (code, body["reason"], body["details"]["kind"]) == (422, "Invalid", "ConfigMap")


def test_admin_conf_is_forbidden_until_kubeadm_cluster_admins_is_bound(server: ApiServer) -> None:
    code, body = api_error(core(server, "admin.conf").list_namespace)
    assert (code, body["reason"]) == (403, "Forbidden")
    assert body["message"].startswith('namespaces is forbidden: User "kubernetes-admin" cannot list resource '
                                      '"namespaces" in API group "" at the cluster scope')
    client.RbacAuthorizationV1Api(server.client("super-admin.conf")).create_cluster_role_binding({
        "metadata": {"name": "kubeadm:cluster-admins"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "kubeadm:cluster-admins"}]})
    assert "kube-system" in {ns.metadata.name for ns in core(server, "admin.conf").list_namespace().items}


def test_a_client_certificate_from_another_ca_is_refused(server: ApiServer, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ca_key, key = pki.generate_key("ECDSA-P256"), pki.generate_key("ECDSA-P256")
    ca = pki.build_certificate(pki.CertSpec("other-ca", is_ca=True, validity_seconds=3600), ca_key.public_key(),
                               ca_key, None, now)
    leaf = pki.build_certificate(pki.CertSpec("intruder", organization=("system:masters",), usages=(pki.CLIENT_AUTH,),
                                              validity_seconds=3600), key.public_key(), ca_key, ca, now)
    (tmp_path / "c.crt").write_bytes(pki.cert_to_pem(leaf))
    (tmp_path / "c.key").write_bytes(pki.key_to_pem(key))
    code, _ = server.status("/api/v1/namespaces", ctx=server.tls(str(tmp_path / "c.crt"), str(tmp_path / "c.key")))
    assert code in (0, 401)  # 0: the TLS handshake failed
    # The server logs the failed handshake on its connection's thread, maybe after the client gave up.
    end = time.monotonic() + 10
    while "TLS handshake error" not in server.log.read_text() and time.monotonic() < end:
        time.sleep(0.05)
    assert "TLS handshake error" in server.log.read_text()


def whoami(api: ApiServer, token: str) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPSConnection(ADDRESS, api.port, context=api.tls(), timeout=10)
    body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    conn.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=body,
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    return resp.status, doc


def bootstrap_secret(token_id: str, expires: datetime) -> dict[str, Any]:
    data = {"token-id": token_id, "token-secret": "0123456789abcdef", "usage-bootstrap-authentication": "true",
            "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
            "expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {"metadata": {"name": f"bootstrap-token-{token_id}"}, "type": "bootstrap.kubernetes.io/token",
            "stringData": data}


def test_a_bootstrap_token_authenticates_while_valid_and_not_after_expiry(server: ApiServer) -> None:
    v1 = core(server)
    now = datetime.now(UTC)
    v1.create_namespaced_secret("kube-system", bootstrap_secret("valid0", now + timedelta(hours=1)))
    v1.create_namespaced_secret("kube-system", bootstrap_secret("old000", now - timedelta(seconds=1)))
    code, doc = whoami(server, "valid0.0123456789abcdef")
    assert code == 201
    assert doc["status"]["userInfo"] == {"username": "system:bootstrap:valid0", "groups": [
        "system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:authenticated"]}
    code, doc = whoami(server, "old000.0123456789abcdef")
    assert (code, doc["reason"], doc["message"]) == (401, "Unauthorized", "Unauthorized")


def test_a_request_without_credentials_is_system_anonymous(server: ApiServer) -> None:
    code, body = server.status("/api/v1/namespaces/kube-system/secrets")
    doc = json.loads(body)
    assert (code, doc["reason"]) == (403, "Forbidden")
    assert doc["message"] == ('secrets is forbidden: User "system:anonymous" cannot list resource "secrets" in API '
                              'group "" in the namespace "kube-system"')


def test_health_and_version_answer_anonymous_callers(server: ApiServer) -> None:
    assert server.status("/livez") == (200, b"ok")
    code, text = server.status("/readyz?verbose")
    assert code == 200
    assert text.endswith(b"readyz check passed\n")
    code, body = server.status("/version")
    assert (code, json.loads(body)["gitVersion"]) == (200, "v1.36.1")


def test_a_watch_streams_the_namespaces_as_added_and_ends_after_its_timeout(server: ApiServer) -> None:
    events = list(watch.Watch().stream(core(server).list_namespace, timeout_seconds=1))
    assert {e["type"] for e in events} == {"ADDED"}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= {e["object"].metadata.name for e in events}


def test_objects_survive_a_server_restart(server: ApiServer) -> None:
    v1 = core(server)
    kept = v1.create_namespaced_config_map("kube-public", {"metadata": {"name": "kept"}, "data": {"x": "y"}})
    assert server.stop() == 0
    server.start()
    again = core(server).read_namespaced_config_map("kept", "kube-public")
    assert (again.metadata.uid, again.data) == (kept.metadata.uid, {"x": "y"})
    assert "kubernetes" in {s.metadata.name for s in core(server).list_namespaced_service("default").items}
