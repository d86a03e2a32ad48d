"""A sandbox control-plane node run by its sandbox kubelet from kubeboot's generated files: the real etcd and
the emulated (or real, when on PATH) control plane, the Node registered with kubelet.conf and Ready; then a
worker with only bootstrap-kubelet.conf goes through the TLS bootstrap to a signed node client certificate
and a Ready Node. Waits are bounded polls, never timing assertions."""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kubernetes.client as k8s
import pytest
import urllib3
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from kubernetes.client.rest import ApiException
from kubernetes.config import new_client_from_config

from kubeboot.sandbox.kubelet.driver import SandboxKubelet

pytestmark = pytest.mark.integration

T = TypeVar("T")
V4 = "kubeadm.k8s.io/v1beta4"
DEADLINE = 90.0
TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"
KUBELET_CONFIG = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                  "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
                  "staticPodPath": "/etc/kubernetes/manifests"}


def addresses(tmp: Path) -> tuple[str, str]:
    h = zlib.crc32(str(tmp).encode())
    base = f"127.62.{h % 250 + 1}.{(h >> 8) % 120 * 2 + 1}"
    return base, base.rsplit(".", 1)[0] + "." + str(int(base.rsplit(".", 1)[1]) + 1)


def eventually(get: Callable[[], T | None], what: str, logs: Callable[[], str]) -> T:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            value = get()
        except (ApiException, OSError, ValueError, KeyError, urllib3.exceptions.HTTPError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"never happened: {what}\n{logs()}")


@dataclass
class Sandbox:
    cp_root: Path
    cp_address: str
    cp: SandboxKubelet
    worker_root: Path
    worker_address: str
    worker: SandboxKubelet

    def logs(self) -> str:
        out = []
        for root in (self.cp_root, self.worker_root):
            for log in [root / "var/lib/kubeboot-sandbox/kubelet.log", *sorted(root.glob("var/log/pods/*/*/*.log"))]:
                if log.exists():
                    out.append(f"--- {log.relative_to(root)}\n" + "\n".join(log.read_text().splitlines()[-25:]))
        return "\n".join(out)

    def admin(self) -> k8s.ApiClient:
        return new_client_from_config(str(self.cp_root / "etc/kubernetes/super-admin.conf"))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, etcd_binary: str, node_phases: Any) -> Iterator[Sandbox]:
    tmp = tmp_path_factory.mktemp("cluster")
    cp_address, worker_address = addresses(tmp)
    config = tmp / "kubeadm.yaml"
    config.write_text(yaml.safe_dump_all([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "localAPIEndpoint": {"advertiseAddress": cp_address}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256"}]))
    cp_root = tmp / "cp1"
    node_phases.init(cp_root, config, "certs", "kubeconfig", "etcd", "control-plane", "kubelet-start")
    worker_root = tmp / "w1"
    (worker_root / "var/lib/kubelet").mkdir(parents=True)
    (worker_root / "var/lib/kubelet/config.yaml").write_text(yaml.safe_dump(KUBELET_CONFIG))
    s = Sandbox(cp_root, cp_address, SandboxKubelet(cp_root, "cp1", cp_address), worker_root, worker_address,
                SandboxKubelet(worker_root, "w1", worker_address))
    try:
        lines: list[str] = []
        s.cp.start(lines.append)
        assert lines == [], s.logs()
        yield s
    finally:
        s.worker.stop_all()
        s.cp.stop_all()


def raw(resp: Any) -> dict[str, Any]:
    return dict(json.loads(resp.data))


def read_node(api: k8s.ApiClient, name: str) -> dict[str, Any]:
    return raw(k8s.CoreV1Api(api).read_node(name, _preload_content=False))


def ready(node: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def test_the_control_plane_node_runs_its_static_pods_and_registers_a_ready_node(sandbox: Sandbox) -> None:
    admin = sandbox.admin()
    node = eventually(lambda: (n := read_node(admin, "cp1")) and ready(n) and n, "node cp1 Ready", sandbox.logs)
    labels = node["metadata"]["labels"]
    assert (labels["kubernetes.io/hostname"], labels["kubernetes.io/os"]) == ("cp1", "linux")
    assert {"type": "InternalIP", "address": sandbox.cp_address} in node["status"]["addresses"]
    manifest = yaml.safe_load((sandbox.cp_root / "etc/kubernetes/manifests/kube-apiserver.yaml").read_text())
    tag = manifest["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == tag

    status = json.loads((sandbox.cp_root / "var/lib/kubeboot-sandbox/pods.json").read_text())
    pods = {p["name"]: p for p in status["pods"]}
    assert set(pods) == {f"{c}-cp1" for c in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")}
    assert all(p["state"] == "running" for p in pods.values())
    assert pods["etcd-cp1"]["kind"] == "real"
    log = (sandbox.cp_root / "var/lib/kubeboot-sandbox/kubelet.log").read_text()
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        expected = "emulated" if pods[f"{component}-cp1"]["kind"] == "emulated" else "real"
        said = f"running emulated {component}: no {component} binary on PATH" in log
        assert said == (expected == "emulated")


def test_the_static_pods_have_mirror_pods_owned_by_the_node_with_their_status(sandbox: Sandbox) -> None:
    admin = sandbox.admin()
    core = k8s.CoreV1Api(admin)

    def etcd_mirror_ready() -> dict[str, Any] | None:
        pod = raw(core.read_namespaced_pod("etcd-cp1", "kube-system", _preload_content=False))
        ready_ = [c for c in pod.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        return pod if ready_ and ready_[0]["status"] == "True" else None

    etcd = eventually(etcd_mirror_ready, "the etcd mirror pod Ready (its probes passed)", sandbox.logs)
    node = read_node(admin, "cp1")
    assert etcd["spec"]["nodeName"] == "cp1"
    assert etcd["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"
    assert etcd["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": "cp1",
                                                    "uid": node["metadata"]["uid"], "controller": True}]
    assert etcd["status"]["phase"] == "Running"
    assert etcd["status"]["podIP"] == sandbox.cp_address
    listed = raw(core.list_namespaced_pod("kube-system", _preload_content=False))
    names = {p["metadata"]["name"] for p in listed["items"] if p["spec"].get("nodeName") == "cp1"}
    assert names == {f"{c}-cp1" for c in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")}
    status = json.loads((sandbox.cp_root / "var/lib/kubeboot-sandbox/pods.json").read_text())
    uid = next(p["uid"] for p in status["pods"] if p["name"] == "etcd-cp1")
    assert etcd["metadata"]["annotations"]["kubernetes.io/config.mirror"] == uid


def test_the_kubelet_learns_of_a_deleted_mirror_pod_from_its_watch_and_makes_it_again(sandbox: Sandbox) -> None:
    """The real kubelet's pod source is a watch (field selector spec.nodeName), not a list every pass."""
    core = k8s.CoreV1Api(sandbox.admin())
    first = eventually(lambda: raw(core.read_namespaced_pod("kube-scheduler-cp1", "kube-system",
                                                            _preload_content=False)), "the mirror pod", sandbox.logs)
    [log] = sandbox.cp_root.glob("var/log/pods/kube-system_kube-apiserver-cp1_*/*/*.log")
    start = len(log.read_text().splitlines())
    core.delete_namespaced_pod("kube-scheduler-cp1", "kube-system", _preload_content=False)

    def made_again() -> dict[str, Any] | None:
        pod = raw(core.read_namespaced_pod("kube-scheduler-cp1", "kube-system", _preload_content=False))
        return pod if pod["metadata"]["uid"] != first["metadata"]["uid"] else None

    eventually(made_again, "the mirror pod made again", sandbox.logs)
    time.sleep(2.0)  # two more passes of the kubelet's 1 s loop
    lists = [line for line in log.read_text().splitlines()[start:]
             if 'verb="GET"' in line and "/api/v1/pods?" in line and 'user="system:node:cp1"' in line]
    assert lists == []


def test_a_worker_with_only_a_bootstrap_kubeconfig_gets_a_node_certificate_and_a_ready_node(
        sandbox: Sandbox) -> None:
    admin = sandbox.admin()
    eventually(lambda: read_node(admin, "cp1"), "the API server up", sandbox.logs)
    token_id, secret = "w1boot", "0123456789abcdef"
    k8s.CoreV1Api(admin).create_namespaced_secret("kube-system", {
        "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
        "stringData": {"token-id": token_id, "token-secret": secret, "usage-bootstrap-authentication": "true",
                       "auth-extra-groups": TOKEN_GROUP}}, _preload_content=False)
    rbac = k8s.RbacAuthorizationV1Api(admin)
    for name, role in (("kubeadm:kubelet-bootstrap", "system:node-bootstrapper"),
                       ("kubeadm:node-autoapprove-bootstrap",
                        "system:certificates.k8s.io:certificatesigningrequests:nodeclient")):
        rbac.create_cluster_role_binding({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": TOKEN_GROUP}]},
            _preload_content=False)
    ca = (sandbox.cp_root / "etc/kubernetes/pki/ca.crt").read_bytes()
    bootstrap = {
        "apiVersion": "v1", "kind": "Config", "current-context": "tls-bootstrap-token-user@kubernetes",
        "clusters": [{"name": "kubernetes", "cluster": {"server": f"https://{sandbox.cp_address}:6443",
                                                        "certificate-authority-data": base64.b64encode(ca).decode()}}],
        "contexts": [{"name": "tls-bootstrap-token-user@kubernetes",
                      "context": {"cluster": "kubernetes", "user": "tls-bootstrap-token-user"}}],
        "users": [{"name": "tls-bootstrap-token-user", "user": {"token": f"{token_id}.{secret}"}}],
    }
    (sandbox.worker_root / "etc/kubernetes").mkdir(parents=True, exist_ok=True)
    (sandbox.worker_root / "etc/kubernetes/bootstrap-kubelet.conf").write_text(yaml.safe_dump(bootstrap))
    lines: list[str] = []
    sandbox.worker.start(lines.append)
    assert lines == []

    node = eventually(lambda: (n := read_node(admin, "w1")) and ready(n) and n, "node w1 Ready", sandbox.logs)
    assert {"type": "InternalIP", "address": sandbox.worker_address} in node["status"]["addresses"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == read_node(admin, "cp1")["status"]["nodeInfo"][
        "kubeletVersion"]
    current = sandbox.worker_root / "var/lib/kubelet/pki/kubelet-client-current.pem"
    assert current.is_symlink()
    assert current.resolve().name.startswith("kubelet-client-2")
    assert current.stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(current.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:w1"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))
    conf = yaml.safe_load((sandbox.worker_root / "etc/kubernetes/kubelet.conf").read_text())
    assert conf["users"][0]["user"] == {"client-certificate": "/var/lib/kubelet/pki/kubelet-client-current.pem",
                                        "client-key": "/var/lib/kubelet/pki/kubelet-client-current.pem"}
    assert conf["clusters"][0]["cluster"]["server"] == f"https://{sandbox.cp_address}:6443"
    assert not (sandbox.worker_root / "var/lib/kubelet/pki/kubelet-client.key.tmp").exists()
