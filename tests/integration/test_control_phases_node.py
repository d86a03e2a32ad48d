"""The node-side control phases against the sandbox's emulated API server started from the kube-apiserver
manifest flags kubeboot's own phases generate: wait-control-plane (kubelet and component health, the
kubeadm:cluster-admins binding made with super-admin.conf once admin.conf is refused), upload-certs
(the kubeadm-certs Secret owned by its 2-hour token, opened by a decryption written from the spec)."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from kubernetes import client, config

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.sandbox.controllermanager import health as stub_health
from kubeboot.tasks import certlist
from kubeboot.tasks.errors import PermanentError, TemporaryError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import certs, controlplane, kubeconfig, uploadcerts, waitcp
from kubeboot.tasks.phases.context import MemorySecrets, NodeContext

pytestmark = pytest.mark.integration
V4 = "kubeadm.k8s.io/v1beta4"
ADDRESS = "127.0.84.1"  # the node's own loopback address: 127.0.0.1 in its files maps here
PKI = "/etc/kubernetes/pki"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return int(s.getsockname()[1])


def spec_decrypt(sealed: bytes, key_hex: str) -> bytes:
    """From the spec alone: 12-byte nonce, then AES-256-GCM ciphertext ending in its 16-byte tag."""
    nonce, body = sealed[:12], sealed[12:]
    dec = Cipher(algorithms.AES(bytes.fromhex(key_hex)), modes.GCM(nonce, body[-16:])).decryptor()
    return dec.update(body[:-16]) + dec.finalize()


class KubeletStub:
    """The kubelet's plain-HTTP /healthz on the node address."""

    def __init__(self, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer((ADDRESS, port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Node:
    root: Path
    cfg: InitConfig
    api_port: int
    kcm_port: int
    scheduler_port: int
    server: Any = None  # conftest's EmulatedApiServer
    stubs: list[Any] = field(default_factory=list)
    kcm_checks: dict[str, Any] = field(default_factory=dict)

    @property
    def fs(self) -> NodeFS:
        return NodeFS(self.root)

    def context(self, secrets: MemorySecrets | None = None) -> tuple[NodeContext, list[str]]:
        lines: list[str] = []
        return NodeContext(self.cfg, self.fs, out=lines.append, secrets=secrets or MemorySecrets(),
                           address_map={"127.0.0.1": ADDRESS, "localhost": ADDRESS}), lines

    def client(self, conf: str) -> Any:
        return config.new_client_from_config(config_file=str(self.root / "etc/kubernetes" / conf))

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.client("super-admin.conf"))

    def rbac(self) -> client.RbacAuthorizationV1Api:
        return client.RbacAuthorizationV1Api(self.client("super-admin.conf"))

    # Read by listing: the client percent-encodes the ":" of kubeadm's names in a read-by-name path.
    def cluster_role_binding(self, name: str) -> Any:
        return next(o for o in self.rbac().list_cluster_role_binding().items if o.metadata.name == name)

    def role(self, name: str) -> Any:
        return next(o for o in self.rbac().list_namespaced_role("kube-system").items if o.metadata.name == name)

    def role_binding(self, name: str) -> Any:
        items = self.rbac().list_namespaced_role_binding("kube-system").items
        return next(o for o in items if o.metadata.name == name)


def make_node(root: Path) -> Node:
    api_port, kcm_port, scheduler_port, kubelet_port = (free_port() for _ in range(4))
    cfg = build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "localAPIEndpoint": {"advertiseAddress": ADDRESS, "bindPort": api_port}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256",
         "controllerManager": {"extraArgs": [{"name": "secure-port", "value": str(kcm_port)}]},
         "scheduler": {"extraArgs": [{"name": "secure-port", "value": str(scheduler_port)}]}}])
    node = Node(root, cfg, api_port, kcm_port, scheduler_port)
    ctx, _ = node.context()
    for row in certlist.cert_table(cfg):
        certs.run_cert(ctx, row.name)
    certs.run_sa(ctx)
    for name in ("admin", "super-admin"):
        kubeconfig.run_kubeconfig_file(ctx, name)
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        controlplane.run_control_plane(ctx, component)
    node.fs.write("/var/lib/kubelet/config.yaml", yaml.safe_dump(
        {"kind": "KubeletConfiguration", "healthzBindAddress": "127.0.0.1", "healthzPort": kubelet_port}))
    node.stubs.append(KubeletStub(kubelet_port))
    return node


def apiserver_argv(node: Node) -> list[str]:
    """The generated kube-apiserver manifest's flags, paths mapped into the root."""
    manifest = yaml.safe_load(node.fs.read_text("/etc/kubernetes/manifests/kube-apiserver.yaml") or "")
    command = manifest["spec"]["containers"][0]["command"]
    return [a.replace("=/etc/kubernetes/", f"={node.root}/etc/kubernetes/") for a in command[1:]]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, emulated_apiserver: Any) -> Iterator[Node]:
    n = make_node(tmp_path_factory.mktemp("node"))
    n.server = emulated_apiserver.start(n.root, apiserver_argv(n), ADDRESS, n.api_port)
    n.stubs.append(stub_health.serve(ADDRESS, n.kcm_port, n.kcm_checks))
    n.stubs.append(stub_health.serve(ADDRESS, n.scheduler_port, {}))
    yield n
    for stub in n.stubs:
        if isinstance(stub, KubeletStub):
            stub.stop()
        else:
            stub.shutdown()
    n.server.stop()


def wait_until_done(ctx: NodeContext) -> None:
    """The retry loop of the engine, in small: attempts until the phase succeeds (bounded)."""
    for _ in range(30):
        try:
            waitcp.wait_control_plane(ctx, clock=lambda: datetime.now(UTC))
            return
        except TemporaryError:
            time.sleep(0.5)
    raise AssertionError("wait-control-plane did not succeed within 30 attempts")


# --- wait-control-plane ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def waited(node: Node) -> list[str]:
    """wait-control-plane run to success once; its output."""
    with pytest.raises(client.ApiException) as refused:
        client.CoreV1Api(node.client("admin.conf")).list_namespaced_secret("kube-system")
    assert refused.value.status == 403  # admin.conf is nobody until kubeadm:cluster-admins exists
    ctx, lines = node.context()
    wait_until_done(ctx)
    return lines


def test_wait_control_plane_checks_the_kubelet_then_every_component_and_reports_them_healthy(
        node: Node, waited: list[str]) -> None:
    assert waited[:2] == [
        '[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from directory '
        '"/etc/kubernetes/manifests"',
        f"[kubelet-check] Waiting for a healthy kubelet at http://127.0.0.1:{_kubelet_port(node)}/healthz. "
        "This can take up to 4m0s",
    ]
    assert waited[2].startswith("[kubelet-check] The kubelet is healthy after ")
    assert waited[3:7] == [
        "[control-plane-check] Waiting for healthy control plane components. This can take up to 4m0s",
        f"[control-plane-check] Checking kube-apiserver at https://{ADDRESS}:{node.api_port}/livez",
        f"[control-plane-check] Checking kube-controller-manager at https://127.0.0.1:{node.kcm_port}/healthz",
        f"[control-plane-check] Checking kube-scheduler at https://127.0.0.1:{node.scheduler_port}/livez",
    ]
    healthy = sorted(line.split(" is healthy after ")[0] for line in waited[7:])
    assert healthy == ["[control-plane-check] kube-apiserver", "[control-plane-check] kube-controller-manager",
                       "[control-plane-check] kube-scheduler"]


def _kubelet_port(node: Node) -> int:
    return int(yaml.safe_load(node.fs.read_text("/var/lib/kubelet/config.yaml") or "")["healthzPort"])


def test_wait_control_plane_binds_kubeadm_cluster_admins_so_admin_conf_works(node: Node, waited: list[str]) -> None:
    crb = node.cluster_role_binding("kubeadm:cluster-admins")
    assert (crb.role_ref.api_group, crb.role_ref.kind, crb.role_ref.name) == (
        "rbac.authorization.k8s.io", "ClusterRole", "cluster-admin")
    assert [(s.kind, s.name) for s in crb.subjects] == [("Group", "kubeadm:cluster-admins")]
    as_admin = client.CoreV1Api(node.client("admin.conf")).list_namespaced_secret("kube-system").items
    as_super_admin = node.core().list_namespaced_secret("kube-system").items
    assert {s.metadata.name for s in as_admin} == {s.metadata.name for s in as_super_admin}


def test_the_binding_step_is_idempotent(node: Node, waited: list[str]) -> None:
    before = node.cluster_role_binding("kubeadm:cluster-admins").metadata.resource_version
    ctx, _ = node.context()
    waitcp.ensure_cluster_admins_binding(ctx)
    assert node.cluster_role_binding("kubeadm:cluster-admins").metadata.resource_version == before


def test_an_unhealthy_component_is_temporary_then_permanent_after_the_deadline(
        node: Node, waited: list[str]) -> None:
    node.kcm_checks["sandbox-down"] = lambda: "stopped for the test"
    try:
        ctx, lines = node.context()
        start = datetime.now(UTC)
        now = [start]
        with pytest.raises(TemporaryError, match=r"kube-controller-manager check failed at .* with status: 500"):
            waitcp.wait_control_plane(ctx, clock=lambda: now[0], window=0)
        assert not any("kube-controller-manager is healthy" in line for line in lines)
        assert any("kube-apiserver is healthy" in line for line in lines)
        now[0] = start + timedelta(minutes=4, seconds=1)
        with pytest.raises(PermanentError, match="failed while waiting for the control plane to start: "
                           "kube-controller-manager check failed"):
            waitcp.wait_control_plane(ctx, clock=lambda: now[0], window=0)
    finally:
        node.kcm_checks.clear()


# --- upload-certs --------------------------------------------------------------------------------------


def _data(secret: Any) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def _upload_tokens(node: Node) -> list[Any]:
    items = node.core().list_namespaced_secret("kube-system").items
    return [s for s in items if s.type == "bootstrap.kubernetes.io/token"
            and _data(s).get("description") == b"Proxy for managing TTL for the kubeadm-certs secret"]


@pytest.fixture(scope="module")
def uploaded(node: Node, waited: list[str]) -> tuple[MemorySecrets, list[str]]:
    secrets = MemorySecrets()
    ctx, lines = node.context(secrets)
    uploadcerts.run_upload_certs(ctx)
    return secrets, lines


def test_upload_certs_prints_kubeadms_lines_with_the_key(uploaded: tuple[MemorySecrets, list[str]]) -> None:
    secrets, lines = uploaded
    key = (secrets.get("certificate-key") or b"").decode()
    assert len(key) == 64
    assert lines == ['[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace',
                     f"[upload-certs] Using certificate key:\n{key}"]


def test_the_secret_is_owned_by_a_two_hour_token_made_like_kubeadms(
        node: Node, uploaded: tuple[MemorySecrets, list[str]]) -> None:
    tokens = _upload_tokens(node)
    assert len(tokens) == 1
    token = tokens[0]
    data = _data(token)
    assert set(data) == {"token-id", "token-secret", "description", "expiration"}  # no usages, no groups
    assert token.metadata.name == f"bootstrap-token-{data['token-id'].decode()}"
    expires = datetime.strptime(data["expiration"].decode(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(minutes=115) < expires - datetime.now(UTC) <= timedelta(hours=2)
    certs_secret = node.core().read_namespaced_secret("kubeadm-certs", "kube-system")
    refs = [r.to_dict() for r in certs_secret.metadata.owner_references]
    assert refs == [{"api_version": "v1", "kind": "Secret", "name": token.metadata.name, "uid": token.metadata.uid,
                     "controller": True, "block_owner_deletion": True}]


def test_the_printed_key_opens_every_value_to_the_nodes_files_byte_for_byte(
        node: Node, uploaded: tuple[MemorySecrets, list[str]]) -> None:
    key = uploaded[1][-1].split("\n")[1]
    sealed = _data(node.core().read_namespaced_secret("kubeadm-certs", "kube-system"))
    files = {"ca.crt": "ca.crt", "ca.key": "ca.key", "front-proxy-ca.crt": "front-proxy-ca.crt",
             "front-proxy-ca.key": "front-proxy-ca.key", "sa.pub": "sa.pub", "sa.key": "sa.key",
             "etcd-ca.crt": "etcd/ca.crt", "etcd-ca.key": "etcd/ca.key"}
    assert set(sealed) == set(files)
    for name, rel in files.items():
        assert spec_decrypt(sealed[name], key) == node.fs.read_bytes(f"{PKI}/{rel}"), name
    with pytest.raises(InvalidTag):
        spec_decrypt(sealed["ca.key"], "ab" * 32)


def test_bootstrap_tokens_may_read_the_secret_through_kubeadms_role(
        node: Node, uploaded: tuple[MemorySecrets, list[str]]) -> None:
    role = node.role("kubeadm:kubeadm-certs")
    assert [(r.verbs, r.api_groups, r.resources, r.resource_names) for r in role.rules] == [
        (["get"], [""], ["secrets"], ["kubeadm-certs"])]
    binding = node.role_binding("kubeadm:kubeadm-certs")
    assert (binding.role_ref.kind, binding.role_ref.name) == ("Role", "kubeadm:kubeadm-certs")
    assert [(s.kind, s.name) for s in binding.subjects] == [
        ("Group", "system:bootstrappers:kubeadm:default-node-token")]


def test_a_retry_of_the_same_run_writes_nothing_and_mints_no_token(
        node: Node, uploaded: tuple[MemorySecrets, list[str]]) -> None:
    before = node.core().read_namespaced_secret("kubeadm-certs", "kube-system").metadata.resource_version
    ctx, lines = node.context(uploaded[0])
    uploadcerts.run_upload_certs(ctx)
    assert lines[-1] == uploaded[1][-1]  # the same key
    assert node.core().read_namespaced_secret("kubeadm-certs", "kube-system").metadata.resource_version == before
    assert len(_upload_tokens(node)) == 1


def test_a_second_run_with_a_new_key_reseals_under_the_same_owner_token(
        node: Node, uploaded: tuple[MemorySecrets, list[str]]) -> None:
    owner = node.core().read_namespaced_secret("kubeadm-certs", "kube-system").metadata.owner_references[0].uid
    ctx, lines = node.context(MemorySecrets())
    uploadcerts.run_upload_certs(ctx)
    key = lines[-1].split("\n")[1]
    assert key != uploaded[1][-1].split("\n")[1]
    secret = node.core().read_namespaced_secret("kubeadm-certs", "kube-system")
    assert spec_decrypt(_data(secret)["ca.crt"], key) == node.fs.read_bytes(f"{PKI}/ca.crt")
    assert secret.metadata.owner_references[0].uid == owner
    assert len(_upload_tokens(node)) == 1
