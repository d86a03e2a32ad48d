"""The sandbox kubelet's TLS bootstrap request, the kubeconfig it writes, the Node it registers, its mirror Pods."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kubeboot.sandbox.kubelet.kubeclient import rooted
from kubeboot.sandbox.kubelet.mirrorpods import mirror_pod, pod_status
from kubeboot.sandbox.kubelet.registration import conditions, kubelet_version, node_object
from kubeboot.sandbox.kubelet.staticpods import parse_pod
from kubeboot.sandbox.kubelet.tlsbootstrap import csr_name, csr_object, kubelet_kubeconfig
from kubeboot.tasks import kubeconfig

A = "127.77.0.2"


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_the_csr_asks_for_a_node_client_certificate(ec_key: ec.EllipticCurvePrivateKey) -> None:
    obj = csr_object(ec_key, "worker1")
    assert obj["apiVersion"] == "certificates.k8s.io/v1"
    assert obj["kind"] == "CertificateSigningRequest"
    assert obj["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
    assert obj["spec"]["usages"] == ["digital signature", "client auth"]
    pem = base64.b64decode(obj["spec"]["request"])
    assert pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    csr = x509.load_pem_x509_csr(pem)
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:worker1"
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:nodes"]
    assert [a.oid for a in csr.subject] == [NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME]  # Go's pkix order
    assert csr.public_key() == ec_key.public_key()


def test_an_rsa_key_also_asks_for_key_encipherment() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert csr_object(key, "worker1")["spec"]["usages"] == ["digital signature", "key encipherment", "client auth"]


def test_the_same_key_and_node_give_the_same_csr_name_and_another_node_another(
        ec_key: ec.EllipticCurvePrivateKey) -> None:
    assert csr_name(ec_key, "worker1") == csr_name(ec_key, "worker1")
    assert csr_name(ec_key, "worker1") != csr_name(ec_key, "worker2")
    assert csr_name(ec_key, "worker1").startswith("node-csr-")
    assert len(csr_name(ec_key, "worker1")) <= 253  # a valid object name


def test_the_bootstrapped_kubeconfig_names_the_current_client_pem() -> None:
    conf = kubelet_kubeconfig("https://127.0.61.1:6443", b"CA PEM", "/var/lib/kubelet/pki/kubelet-client-current.pem")
    parsed = kubeconfig.parse(yaml.safe_dump(conf))
    assert (parsed.current_context, parsed.cluster_name, parsed.user_name) == \
        ("default-context", "default-cluster", "default-auth")
    assert (parsed.server, parsed.ca_data) == ("https://127.0.61.1:6443", b"CA PEM")
    user = conf["users"][0]["user"]
    assert user == {"client-certificate": "/var/lib/kubelet/pki/kubelet-client-current.pem",
                    "client-key": "/var/lib/kubelet/pki/kubelet-client-current.pem"}


def test_kubeconfig_paths_are_read_under_the_node_root_and_loopback_servers_at_the_node_address() -> None:
    conf = kubelet_kubeconfig("https://127.0.0.1:6443", b"x", "/var/lib/kubelet/pki/kubelet-client-current.pem")
    got = rooted(conf, Path("/nodes/w1"), A)
    assert got["clusters"][0]["cluster"]["server"] == f"https://{A}:6443"
    assert got["users"][0]["user"]["client-key"] == "/nodes/w1/var/lib/kubelet/pki/kubelet-client-current.pem"
    assert conf["users"][0]["user"]["client-key"] == "/var/lib/kubelet/pki/kubelet-client-current.pem"  # a copy


def test_the_node_object_carries_the_kubelets_labels_addresses_and_ready_condition() -> None:
    node = node_object("w1", A, "v1.35.0", "2026-01-01T00:00:00Z")
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "w1"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] in {"amd64", "arm64", "arm", "ppc64le", "s390x"}
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": A}, {"type": "Hostname", "address": "w1"}]
    ready = [cond for cond in node["status"]["conditions"] if cond["type"] == "Ready"]
    assert [(r["status"], r["reason"]) for r in ready] == [("True", "KubeletReady")]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.0"
    assert {cond["type"] for cond in conditions("t")} == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}


@pytest.mark.parametrize(("images", "version"), [
    (["registry.k8s.io/etcd:3.6.8-0", "registry.k8s.io/kube-apiserver:v1.35.0"], "v1.35.0"),
    (["localhost:5000/kube-scheduler:v1.34.2"], "v1.34.2"),
    (["registry.k8s.io/etcd:3.6.8-0"], ""),
    ([], ""),
], ids=["control plane node", "registry with a port", "etcd only", "worker without static pods"])
def test_the_kubelet_version_comes_from_the_control_plane_images(images: list[str], version: str) -> None:
    pods = [{"spec": {"containers": [{"image": image}]}} for image in images]
    assert kubelet_version(pods) == version


def test_a_mirror_pod_is_the_static_pod_bound_to_its_node_and_owned_by_it(tmp_path: Path) -> None:
    content = b"apiVersion: v1\nkind: Pod\nmetadata: {name: etcd, namespace: kube-system, annotations: {a: b}}\n" \
              b"spec: {containers: [{name: etcd, image: 'e:1', command: [etcd]}]}\n"
    pod = parse_pod(content, tmp_path / "etcd.yaml", "w1")
    assert pod is not None
    mirror = mirror_pod(pod, "w1", "node-uid")
    assert mirror["metadata"]["name"] == "etcd-w1"
    assert mirror["metadata"]["annotations"] == {"a": "b", "kubernetes.io/config.hash": pod.uid,
                                                 "kubernetes.io/config.mirror": pod.uid,
                                                 "kubernetes.io/config.source": "file"}
    assert mirror["metadata"]["ownerReferences"][0] == {"apiVersion": "v1", "kind": "Node", "name": "w1",
                                                        "uid": "node-uid", "controller": True}
    assert mirror["spec"]["nodeName"] == "w1"
    assert "nodeName" not in pod.pod["spec"]  # the static Pod itself is left alone


@pytest.mark.parametrize(("entry", "phase", "ready", "state"), [
    ({"state": "running", "ready": True, "started": True, "restarts": 0, "pid": 7}, "Running", "True", "running"),
    ({"state": "running", "ready": False, "started": False, "restarts": 0, "pid": 7}, "Running", "False", "running"),
    ({"state": "waiting", "ready": False, "started": False, "restarts": 3, "pid": None}, "Pending", "False",
     "waiting"),
], ids=["running and ready", "running, probes pending", "crash looping"])
def test_the_mirror_pod_status_follows_the_process(entry: dict[str, object], phase: str, ready: str,
                                                   state: str) -> None:
    status = pod_status({**entry, "container": "web", "image": "i:1", "startedAt": "t"}, A)
    assert status["phase"] == phase
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == ready
    container = status["containerStatuses"][0]
    assert (container["restartCount"], list(container["state"])) == (entry["restarts"], [state])
    assert status["podIP"] == A
