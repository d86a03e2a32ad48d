"""bootstrap-token's RBAC and cluster-info (spec 2.11), and show-join-command's text (spec 2.14)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import kubeconfig as kcfg
from kubeboot.tasks import pki
from kubeboot.tasks.phases import bootstraptoken as bt
from kubeboot.tasks.phases import showjoin

V4 = "kubeadm.k8s.io/v1beta4"
RBAC = "rbac.authorization.k8s.io"
TOKENS, NODES = "system:bootstrappers:kubeadm:default-node-token", "system:nodes"
HASH = "sha256:" + "ab" * 32


def config(version: str = "v1.36.1", cpe: str = "") -> InitConfig:
    return build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "localAPIEndpoint": {"advertiseAddress": "10.0.0.5"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "kubernetesVersion": version,
         "controlPlaneEndpoint": cpe}])


def bindings(cfg: InitConfig) -> dict[str, dict[str, Any]]:
    objs = [o for step in bt.rbac_steps(cfg) for o in step.objects()]
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "ClusterRoleBinding"}


@pytest.mark.parametrize(("name", "role", "subject"), [
    pytest.param("kubeadm:get-nodes", "kubeadm:get-nodes", ("Group", TOKENS), id="get-nodes"),
    pytest.param("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", ("Group", TOKENS), id="kubelet-bootstrap"),
    pytest.param("kubeadm:node-autoapprove-bootstrap",
                 "system:certificates.k8s.io:certificatesigningrequests:nodeclient", ("Group", TOKENS),
                 id="node-autoapprove-bootstrap"),
    pytest.param("kubeadm:node-autoapprove-certificate-rotation",
                 "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", ("Group", NODES),
                 id="node-autoapprove-certificate-rotation"),
    pytest.param("kubeadm:apiserver-kubelet-client", "system:kubelet-api-admin",
                 ("User", "kube-apiserver-kubelet-client"), id="apiserver-kubelet-client (1.36)"),
])
def test_every_cluster_role_binding_of_the_spec_has_its_role_and_subject(name: str, role: str,
                                                                         subject: tuple[str, str]) -> None:
    crb = bindings(config())[name]
    assert crb["roleRef"] == {"apiGroup": RBAC, "kind": "ClusterRole", "name": role}
    assert crb["subjects"] == [{"kind": subject[0], "apiGroup": RBAC, "name": subject[1]}]


def test_bootstrap_tokens_may_get_nodes_and_nothing_else() -> None:
    roles = [o for step in bt.rbac_steps(config()) for o in step.objects() if o["kind"] == "ClusterRole"]
    assert [(r["metadata"]["name"], r["rules"]) for r in roles] == [
        ("kubeadm:get-nodes", [{"verbs": ["get"], "apiGroups": [""], "resources": ["nodes"]}])]


@pytest.mark.parametrize(("version", "present"), [
    pytest.param("v1.35.2", False, id="1.35 keeps system:masters on the certificate"),
    pytest.param("v1.36.1", True, id="1.36 binds the certificate's user"),
])
def test_the_apiserver_kubelet_client_binding_comes_with_1_36(version: str, present: bool) -> None:
    assert ("kubeadm:apiserver-kubelet-client" in bindings(config(version))) is present
    lines = [step.message for step in bt.rbac_steps(config(version))]
    assert ("Configured RBAC rules to allow the API server kubelet client certificate to access the kubelet API"
            in lines) is present


def test_the_rbac_lines_are_kubeadms_in_its_order() -> None:
    assert [s.message for s in bt.rbac_steps(config())] == [
        "Configured RBAC rules to allow Node Bootstrap tokens to get nodes",
        "Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes to get long term "
        "certificate credentials",
        "Configured RBAC rules to allow the csrapprover controller automatically approve CSRs from a Node Bootstrap "
        "Token",
        "Configured RBAC rules to allow certificate rotation for all node client certificates in the cluster",
        "Configured RBAC rules to allow the API server kubelet client certificate to access the kubelet API",
    ]


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, str]:
    key = pki.generate_key("ECDSA-P256")
    cert = pki.build_certificate(pki.CertSpec("kubernetes", is_ca=True, validity_seconds=3600), key.public_key(),
                                 key, None, datetime.now(UTC))
    return pki.cert_to_pem(cert), pki.ca_cert_hash(cert)


def admin_conf(server: str, ca_pem: bytes) -> bytes:
    doc = kcfg.kubeconfig_with_certs(server, "kubernetes", "kubernetes-admin", ca_pem, b"KEY", b"CERT")
    return kcfg.dump(doc).encode()


def test_cluster_info_is_the_server_and_ca_with_no_user(ca: tuple[bytes, str]) -> None:
    cm, _ = bt.cluster_info_objects(config(cpe="cp.example.test"), ca[0])
    assert (cm["metadata"]["name"], cm["metadata"]["namespace"], list(cm["data"])) == (
        "cluster-info", "kube-public", ["kubeconfig"])
    doc = yaml.safe_load(cm["data"]["kubeconfig"])
    assert doc["clusters"] == [{"name": "", "cluster": {
        "server": "https://cp.example.test:6443",
        "certificate-authority-data": base64.b64encode(ca[0]).decode()}}]
    assert (doc["users"], doc["contexts"], doc["current-context"]) == (None, None, "")


def test_anonymous_may_read_cluster_info_and_only_it(ca: tuple[bytes, str]) -> None:
    _, (role, binding) = bt.cluster_info_objects(config(), ca[0])
    assert role["metadata"] == {"name": "kubeadm:bootstrap-signer-clusterinfo", "namespace": "kube-public"}
    assert role["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
                              "resourceNames": ["cluster-info"]}]
    assert binding["roleRef"] == {"apiGroup": RBAC, "kind": "Role", "name": "kubeadm:bootstrap-signer-clusterinfo"}
    assert binding["subjects"] == [{"kind": "User", "apiGroup": RBAC, "name": "system:anonymous"}]


def test_the_ca_and_server_are_read_from_admin_conf(ca: tuple[bytes, str]) -> None:
    conf = admin_conf("https://10.0.0.5:6443", ca[0])
    assert bt.admin_ca_pem(conf) == ca[0]
    assert showjoin.admin_server(conf) == "https://10.0.0.5:6443"


def test_the_worker_join_command_is_kubeadms_template_to_the_trailing_space() -> None:
    assert showjoin.join_command("cp:6443", "abcdef.0123456789abcdef", [HASH]) == (
        "kubeadm join cp:6443 --token abcdef.0123456789abcdef \\\n"
        f"\t--discovery-token-ca-cert-hash {HASH} ")


def test_the_control_plane_join_command_adds_the_certificate_key() -> None:
    assert showjoin.join_command("cp:6443", "abcdef.0123456789abcdef", [HASH], control_plane=True,
                                 certificate_key="f" * 64) == (
        "kubeadm join cp:6443 --token abcdef.0123456789abcdef \\\n"
        f"\t--discovery-token-ca-cert-hash {HASH} \\\n"
        f"\t--control-plane --certificate-key {'f' * 64}")


def text(cpe: bool, upload: bool) -> str:
    return showjoin.init_done_text(control_plane_endpoint=cpe, upload_certs=upload, cp_command="CP-JOIN",
                                   worker_command="WORKER-JOIN")


def test_without_control_plane_endpoint_only_the_worker_join_is_shown() -> None:
    out = text(cpe=False, upload=True)
    assert "CP-JOIN" not in out
    assert out.startswith("\nYour Kubernetes control-plane has initialized successfully!\n")
    assert out.endswith("addons/\n\nThen you can join any number of worker nodes by running the following on each "
                        "as root:\n\nWORKER-JOIN\n")


def test_with_uploaded_certs_the_control_plane_join_comes_with_the_two_hour_warning() -> None:
    out = text(cpe=True, upload=True)
    assert ("You can now join any number of the control-plane node running the following command on each as "
            "root:\n\n  CP-JOIN\n\nPlease note that the certificate-key gives access to cluster sensitive data, "
            "keep it secret!\nAs a safeguard, uploaded-certs will be deleted in two hours; If necessary, you can "
            "use\n\"kubeadm init phase upload-certs --upload-certs\" to reload certs afterward.\n\n"
            "Then you can join") in out


def test_without_uploaded_certs_the_control_plane_join_asks_to_copy_the_cas() -> None:
    out = text(cpe=True, upload=False)
    assert ("You can now join any number of control-plane nodes by copying certificate authorities\nand service "
            "account keys on each node and then running the following as root:\n\n  CP-JOIN\n\nThen you can join"
            ) in out
    assert "two hours" not in out
