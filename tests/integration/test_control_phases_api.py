"""The API phases of the control worker — upload-config, mark-control-plane, bootstrap-token,
show-join-command — against the sandbox's emulated API server started from the kube-apiserver manifest
flags kubeboot's own phases generate, with real TLS and real RBAC. Every object is read back with the
official ``kubernetes`` client and checked against the spec (2.8, 2.10, 2.11, 2.14); every phase runs
twice and the second run changes nothing."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import pki
from kubeboot.tasks.errors import TemporaryError
from kubeboot.tasks.phases import (
    bootstraptoken,
    markcontrolplane,
    showjoin,
    uploadconfig,
)
from kubeboot.tasks.phases.context import ControlContext

pytestmark = pytest.mark.integration
V4 = "kubeadm.k8s.io/v1beta4"
RBAC = "rbac.authorization.k8s.io"
ADDRESS = "127.0.72.1"
NODE = "cp1"
KUBERNETES = "etc/kubernetes"
CERTIFICATE_KEY = "0f" * 32
NOW = datetime.now(UTC).replace(microsecond=0)
TOKENS, NODES = "system:bootstrappers:kubeadm:default-node-token", "system:nodes"

PHASES: list[Callable[[ControlContext], None]] = [
    uploadconfig.run_upload_config_kubeadm, uploadconfig.run_upload_config_kubelet,
    markcontrolplane.run_mark_control_plane, bootstraptoken.run_bootstrap_token, showjoin.run_show_join_command,
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    root: Path
    cfg: InitConfig
    server: Any  # conftest's EmulatedApiServer
    lines: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def log(self) -> Path:
        return self.server.log

    def file(self, name: str) -> bytes:
        return (self.root / KUBERNETES / name).read_bytes()

    def stop(self) -> int:
        return self.server.stop()

    def status(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        return self.server.status(path, headers)

    def requests_since(self, offset: int) -> list[str]:
        """Access-log lines written after byte ``offset``, once a marker request shows the log caught up."""
        marker = f"/livez?marker={time.monotonic_ns()}"
        assert self.status(marker)[0] == 200
        deadline = time.monotonic() + 10
        while marker not in (text := self.log.read_bytes()[offset:].decode()):
            assert time.monotonic() < deadline, "the access log did not show the marker request"
            time.sleep(0.02)
        return [line for line in text.splitlines() if line.startswith("HTTP verb=") and marker not in line]

    def client(self, conf: str = "super-admin.conf") -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.root / KUBERNETES / conf))

    def context(self, node: str = NODE, **secrets: bytes) -> ControlContext:
        ctx = ControlContext(self.cfg, node=node, now=NOW, out=self.lines.append)
        for name in ("admin.conf", "super-admin.conf"):
            ctx.secrets.put(name, self.file(name))
        for name, value in secrets.items():
            ctx.secrets.put(name.replace("_", "-"), value)
        return ctx


def generate(root: Path, port: int, node_phases: Any) -> InitConfig:
    cfg: InitConfig = node_phases.pki_node(root, ADDRESS, port, name=NODE, controlPlaneEndpoint=f"{ADDRESS}:{port}")
    return cfg


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, emulated_apiserver: Any,
            node_phases: Any) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("node")
    port = free_port()
    cfg = generate(root, port, node_phases)
    cl = Cluster(root, cfg, emulated_apiserver.start(root, emulated_apiserver.argv(cfg, root), ADDRESS, port))
    try:
        node_phases.bind_cluster_admins(cl.client())  # what wait-control-plane does first
        # The kubelet registers its Node; here the super admin stands in for it.
        client.CoreV1Api(cl.client()).create_node({"metadata": {"name": NODE}})
        yield cl
    finally:
        assert cl.stop() == 0


Snapshot = dict[str, str]

# Every object the four phases write: (kind, namespace, name).
OBJECTS = [
    ("ConfigMap", "kube-system", "kubeadm-config"), ("Role", "kube-system", "kubeadm:nodes-kubeadm-config"),
    ("RoleBinding", "kube-system", "kubeadm:nodes-kubeadm-config"), ("ConfigMap", "kube-system", "kubelet-config"),
    ("Role", "kube-system", "kubeadm:kubelet-config"), ("RoleBinding", "kube-system", "kubeadm:kubelet-config"),
    ("Node", None, NODE), ("ClusterRole", None, "kubeadm:get-nodes"),
    ("ClusterRoleBinding", None, "kubeadm:get-nodes"), ("ClusterRoleBinding", None, "kubeadm:kubelet-bootstrap"),
    ("ClusterRoleBinding", None, "kubeadm:node-autoapprove-bootstrap"),
    ("ClusterRoleBinding", None, "kubeadm:node-autoapprove-certificate-rotation"),
    ("ClusterRoleBinding", None, "kubeadm:apiserver-kubelet-client"),
    ("ConfigMap", "kube-public", "cluster-info"), ("Role", "kube-public", "kubeadm:bootstrap-signer-clusterinfo"),
    ("RoleBinding", "kube-public", "kubeadm:bootstrap-signer-clusterinfo"),
]


def read(api: client.ApiClient, kind: str, namespace: str | None, name: str) -> Any:
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    readers: dict[str, Callable[[], Any]] = {
        "ConfigMap": lambda: core.read_namespaced_config_map(name, namespace),
        "Secret": lambda: core.read_namespaced_secret(name, namespace),
        "Node": lambda: core.read_node(name),
        "Role": lambda: rbac.read_namespaced_role(name, namespace),
        "RoleBinding": lambda: rbac.read_namespaced_role_binding(name, namespace),
        "ClusterRole": lambda: rbac.read_cluster_role(name),
        "ClusterRoleBinding": lambda: rbac.read_cluster_role_binding(name),
    }
    return readers[kind]()


def token_secrets(api: client.ApiClient) -> list[Any]:
    items = client.CoreV1Api(api).list_namespaced_secret("kube-system").items
    return [s for s in items if s.type == "bootstrap.kubernetes.io/token"]


def snapshot(api: client.ApiClient) -> Snapshot:
    versions = {f"{k} {ns}/{n}": read(api, k, ns, n).metadata.resource_version for k, ns, n in OBJECTS}
    versions.update({f"Secret {s.metadata.name}": s.metadata.resource_version for s in token_secrets(api)})
    return versions


@dataclass
class Runs:
    first: list[str]
    second: list[str]
    after_first: Snapshot
    after_second: Snapshot
    second_requests: list[str]
    ctx: ControlContext


@pytest.fixture(scope="module")
def runs(cluster: Cluster) -> Runs:
    """All four phases in kubeadm's order, then all of them again in the same run (a resume)."""
    ctx = cluster.context(certificate_key=CERTIFICATE_KEY.encode())
    for phase in PHASES:
        phase(ctx)
    first, after_first = list(cluster.lines), snapshot(cluster.client())
    cluster.lines.clear()
    offset = cluster.log.stat().st_size
    for phase in PHASES:
        phase(ctx)
    requests = cluster.requests_since(offset)
    second, after_second = list(cluster.lines), snapshot(cluster.client())
    cluster.lines.clear()
    return Runs(first, second, after_first, after_second, requests, ctx)


def the_token(runs: Runs) -> str:
    line = next(x for x in runs.first if x.startswith("[bootstrap-token] Using token: "))
    return line.removeprefix("[bootstrap-token] Using token: ")


def subjects(obj: Any) -> list[tuple[str, str]]:
    return [(s.kind, s.name) for s in obj.subjects]


# --- upload-config -----------------------------------------------------------------------------------

def test_kubeadm_config_holds_the_cluster_configuration_without_tokens_or_node_data(cluster: Cluster,
                                                                                   runs: Runs) -> None:
    cm = read(cluster.client(), "ConfigMap", "kube-system", "kubeadm-config")
    assert list(cm.data) == ["ClusterConfiguration"]
    doc = yaml.safe_load(cm.data["ClusterConfiguration"])
    assert (doc["apiVersion"], doc["kind"]) == (V4, "ClusterConfiguration")
    assert doc["kubernetesVersion"] == cluster.cfg.version.text
    assert doc["controlPlaneEndpoint"] == f"{ADDRESS}:{cluster.port}"
    assert doc["encryptionAlgorithm"] == "ECDSA-P256"
    assert the_token(runs).split(".")[0] not in cm.data["ClusterConfiguration"]
    assert NODE not in cm.data["ClusterConfiguration"]


def test_kubelet_config_carries_the_kubelet_configuration_and_kubeadms_hash(cluster: Cluster, runs: Runs) -> None:
    cm = read(cluster.client(), "ConfigMap", "kube-system", "kubelet-config")
    text = cm.data["kubelet"]
    assert yaml.safe_load(text)["kind"] == "KubeletConfiguration"
    assert cm.metadata.annotations["kubeadm.kubernetes.io/component-config.hash"] == (
        "sha256:" + hashlib.sha256(text.encode()).hexdigest())


@pytest.mark.parametrize(("name", "config_map", "expected_subjects"), [
    pytest.param("kubeadm:nodes-kubeadm-config", "kubeadm-config", [("Group", TOKENS), ("Group", NODES)],
                 id="kubeadm-config"),
    pytest.param("kubeadm:kubelet-config", "kubelet-config", [("Group", NODES), ("Group", TOKENS)],
                 id="kubelet-config"),
])
def test_joining_nodes_may_read_the_config_maps(cluster: Cluster, runs: Runs, name: str, config_map: str,
                                                expected_subjects: list[tuple[str, str]]) -> None:
    api = cluster.client()
    role = read(api, "Role", "kube-system", name)
    assert [(r.verbs, r.api_groups, r.resources, r.resource_names) for r in role.rules] == [
        (["get"], [""], ["configmaps"], [config_map])]
    binding = read(api, "RoleBinding", "kube-system", name)
    assert (binding.role_ref.kind, binding.role_ref.name) == ("Role", name)
    assert subjects(binding) == expected_subjects


# --- mark-control-plane ------------------------------------------------------------------------------

def test_the_node_is_labelled_and_tainted_as_a_control_plane(cluster: Cluster, runs: Runs) -> None:
    node = read(cluster.client(), "Node", None, NODE)
    assert node.metadata.labels["node-role.kubernetes.io/control-plane"] == ""
    assert node.metadata.labels["node.kubernetes.io/exclude-from-external-load-balancers"] == ""
    assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [
        ("node-role.kubernetes.io/control-plane", None, "NoSchedule")]


def test_a_node_not_registered_yet_is_a_temporary_error(cluster: Cluster) -> None:
    with pytest.raises(TemporaryError, match="not registered yet"):
        markcontrolplane.run_mark_control_plane(cluster.context(node="cp-later"))


# --- bootstrap-token ---------------------------------------------------------------------------------

def test_the_printed_token_is_stored_as_its_secret_with_the_spec_fields(cluster: Cluster, runs: Runs) -> None:
    token_id, token_secret = the_token(runs).split(".")
    secret = read(cluster.client(), "Secret", "kube-system", f"bootstrap-token-{token_id}")
    data = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
    assert secret.type == "bootstrap.kubernetes.io/token"
    assert data == {
        "token-id": token_id, "token-secret": token_secret,
        "expiration": (NOW + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
        "auth-extra-groups": TOKENS,
        "description": "The default bootstrap token generated by 'kubeadm init'.",
    }


@pytest.mark.parametrize(("name", "role", "subject"), [
    ("kubeadm:get-nodes", "kubeadm:get-nodes", ("Group", TOKENS)),
    ("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", ("Group", TOKENS)),
    ("kubeadm:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
     ("Group", TOKENS)),
    ("kubeadm:node-autoapprove-certificate-rotation",
     "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", ("Group", NODES)),
    ("kubeadm:apiserver-kubelet-client", "system:kubelet-api-admin", ("User", "kube-apiserver-kubelet-client")),
])
def test_each_cluster_role_binding_of_the_spec_exists(cluster: Cluster, runs: Runs, name: str, role: str,
                                                      subject: tuple[str, str]) -> None:
    crb = read(cluster.client(), "ClusterRoleBinding", None, name)
    assert (crb.role_ref.api_group, crb.role_ref.kind, crb.role_ref.name) == (RBAC, "ClusterRole", role)
    assert subjects(crb) == [subject]


@pytest.mark.parametrize(("path", "status"), [
    pytest.param(f"/api/v1/nodes/{NODE}", 200, id="get its node (kubeadm:get-nodes)"),
    pytest.param("/api/v1/namespaces/kube-system/configmaps/kubeadm-config", 200, id="read kubeadm-config"),
    pytest.param("/api/v1/namespaces/kube-system/configmaps/kubelet-config", 200, id="read kubelet-config"),
    pytest.param("/api/v1/namespaces/kube-system/secrets", 403, id="but not list secrets"),
])
def test_the_token_has_exactly_the_rights_a_join_needs(cluster: Cluster, runs: Runs, path: str, status: int) -> None:
    assert cluster.status(path, {"Authorization": f"Bearer {the_token(runs)}"})[0] == status


def test_cluster_info_is_readable_anonymously_and_holds_the_server_and_ca(cluster: Cluster, runs: Runs) -> None:
    code, _ = cluster.status("/api/v1/namespaces/kube-public/configmaps/cluster-info")
    assert code == 200  # no credentials at all: system:anonymous through the RoleBinding
    cm = read(cluster.client(), "ConfigMap", "kube-public", "cluster-info")
    doc = yaml.safe_load(cm.data["kubeconfig"])
    [entry] = doc["clusters"]
    assert entry["name"] == ""
    assert entry["cluster"]["server"] == f"https://{ADDRESS}:{cluster.port}"
    assert base64.b64decode(entry["cluster"]["certificate-authority-data"]) == cluster.file("pki/ca.crt")
    assert (doc["users"], doc["contexts"]) == (None, None)
    binding = read(cluster.client(), "RoleBinding", "kube-public", "kubeadm:bootstrap-signer-clusterinfo")
    assert subjects(binding) == [("User", "system:anonymous")]


def test_the_phase_prints_kubeadms_lines(runs: Runs) -> None:
    lines = [x for x in runs.first if x.startswith("[bootstrap-token]")]
    assert lines[1:] == [
        "[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles",
        "[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes",
        "[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes to "
        "get long term certificate credentials",
        "[bootstrap-token] Configured RBAC rules to allow the csrapprover controller automatically approve CSRs "
        "from a Node Bootstrap Token",
        "[bootstrap-token] Configured RBAC rules to allow certificate rotation for all node client certificates "
        "in the cluster",
        "[bootstrap-token] Configured RBAC rules to allow the API server kubelet client certificate to access the "
        "kubelet API",
        '[bootstrap-token] Creating the "cluster-info" ConfigMap in the "kube-public" namespace',
    ]


# --- show-join-command -------------------------------------------------------------------------------

def test_the_join_commands_pin_the_ca_and_carry_token_and_certificate_key(cluster: Cluster, runs: Runs) -> None:
    ca_hash = pki.ca_cert_hash(pki.load_cert(cluster.file("pki/ca.crt")))
    start = runs.first.index("Your Kubernetes control-plane has initialized successfully!") - 1  # a blank line
    text = "\n".join(runs.first[start:]) + "\n"
    worker = (f"kubeadm join {ADDRESS}:{cluster.port} --token {the_token(runs)} \\\n"
              f"\t--discovery-token-ca-cert-hash {ca_hash} ")
    assert f"\n{worker}\n" in text
    assert f"  {worker}\\\n\t--control-plane --certificate-key {CERTIFICATE_KEY}\n" in text
    assert runs.ctx.secrets.get("join-command") == text.encode()


# --- convergence -------------------------------------------------------------------------------------

def test_a_second_run_mints_no_second_token(cluster: Cluster, runs: Runs) -> None:
    assert len(token_secrets(cluster.client())) == 1
    assert f"[bootstrap-token] Using token: {the_token(runs)}" in runs.second


def test_a_second_run_changes_no_object(runs: Runs) -> None:
    assert runs.after_second == runs.after_first
    assert len(runs.after_first) == len(OBJECTS) + 1


def test_a_second_run_writes_nothing_its_creates_find_everything_there(runs: Runs) -> None:
    """kubeadm's create-or-update tries the create first; every one answers 409 AlreadyExists, and an
    object already as desired is not replaced (no PUT, no PATCH)."""
    writes = [line for line in runs.second_requests if not line.startswith('HTTP verb="GET"')]
    assert writes, "the second run tried no create at all"
    assert all(line.startswith('HTTP verb="POST"') and " resp=409 " in line for line in writes), writes


def test_a_second_run_prints_the_same_lines(runs: Runs) -> None:
    assert runs.second == runs.first


def test_an_edited_token_secret_is_put_back_and_cluster_info_keeps_the_signers_keys(cluster: Cluster,
                                                                                    runs: Runs) -> None:
    api, core = cluster.client(), client.CoreV1Api(cluster.client())
    token_id = the_token(runs).split(".")[0]
    core.patch_namespaced_secret(f"bootstrap-token-{token_id}", "kube-system",
                                 {"data": {"description": base64.b64encode(b"edited").decode()}})
    core.patch_namespaced_config_map("cluster-info", "kube-public", {"data": {f"jws-kubeconfig-{token_id}": "sig"}})
    bootstraptoken.run_bootstrap_token(runs.ctx)
    secret = read(api, "Secret", "kube-system", f"bootstrap-token-{token_id}")
    assert base64.b64decode(secret.data["description"]) == b"The default bootstrap token generated by 'kubeadm init'."
    assert read(api, "ConfigMap", "kube-public", "cluster-info").data[f"jws-kubeconfig-{token_id}"] == "sig"


def test_an_unreachable_api_server_is_a_temporary_error_naming_the_connection(cluster: Cluster) -> None:
    ctx = cluster.context()
    moved = cluster.file("admin.conf").replace(f":{cluster.port}".encode(), f":{free_port()}".encode())
    ctx.secrets.put("admin.conf", moved)
    with pytest.raises(TemporaryError, match="Connection refused"):
        uploadconfig.run_upload_config_kubeadm(ctx)
