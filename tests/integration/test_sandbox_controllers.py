"""The emulated kube-controller-manager against the emulated kube-apiserver, both started from the
manifests kubeboot's own phases generate (certs, kubeconfig, control-plane; ECDSA-P256), the way the
sandbox kubelet starts them: node paths mapped into the node root, 127.0.0.1 mapped to the node address.

Everything goes through the official ``kubernetes`` client over TLS. Waits are bounded polls of the
state the controllers converge to, never timing assertions.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import os
import random
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes.client.rest import ApiException
from kubernetes.config import new_client_from_config

pytestmark = pytest.mark.integration

DEADLINE = 60.0  # bound of every wait; never an assertion
TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"


def free_address() -> str:
    return f"127.{random.randint(90, 99)}.{random.randint(0, 255)}.{random.randint(2, 254)}"


def command_of(manifest: Path, root: Path, address: str) -> list[str]:
    """The container command with hostPath volumes mapped into ``root`` and 127.0.0.1 to ``address``."""
    pod = yaml.safe_load(manifest.read_text())
    container = pod["spec"]["containers"][0]
    mounts = sorted(((m["mountPath"], next(v["hostPath"]["path"] for v in pod["spec"]["volumes"]
                                          if v["name"] == m["name"])) for m in container["volumeMounts"]),
                    key=lambda m: -len(m[0]))
    out = []
    for arg in container["command"][1:]:
        name, eq, value = arg.partition("=")
        for mount_path, host_path in mounts:
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                value = f"{root}{host_path}{value[len(mount_path):]}"
                break
        out.append(f"{name}{eq}{value.replace('127.0.0.1', address)}")
    return out


@dataclass
class Cluster:
    dir: Path
    root: Path
    address: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def pki(self) -> Path:
        return self.root / "etc/kubernetes/pki"

    def start(self, name: str, module: str, manifest: str) -> None:
        args = command_of(self.root / "etc/kubernetes/manifests" / manifest, self.root, self.address)
        env = {**os.environ, "KUBEBOOT_SANDBOX_DIR": str(self.root / "var/lib/kubeboot-sandbox"),
               "PYTHONUNBUFFERED": "1"}
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.procs[name] = subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-40:])
                         for p in sorted(self.dir.glob("*.log")))

    def wait_for(self, what: str, ready: Callable[[], Any], deadline: float = DEADLINE) -> Any:
        end = time.monotonic() + deadline
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited with {proc.returncode} while waiting for {what}\n{self.logs()}")
            try:
                value = ready()
            except (ApiException, OSError, ValueError):
                value = None
            if value:
                return value
            if time.monotonic() > end:
                pytest.fail(f"gave up waiting {deadline:.0f}s for {what}\n{self.logs()}")
            time.sleep(0.1)

    def https_get(self, port: int, path: str, ca: Path | None = None) -> tuple[int, str]:
        ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
        try:
            with urllib.request.urlopen(f"https://{self.address}:{port}{path}", context=ctx, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def admin(self) -> k8s.ApiClient:
        return new_client_from_config(str(self.root / "etc/kubernetes/admin.conf"))

    def token_client(self, token: str) -> k8s.ApiClient:
        conf = k8s.Configuration()
        conf.host = f"https://{self.address}:6443"
        conf.ssl_ca_cert = str(self.pki / "ca.crt")
        conf.api_key = {"BearerToken": token}
        conf.api_key_prefix = {"BearerToken": "Bearer"}
        return k8s.ApiClient(conf)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, emulated_apiserver: Any,
            node_phases: Any) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("kcm")
    address = free_address()
    c = Cluster(directory, node_phases.control_plane(directory, address), address)
    try:
        argv = command_of(c.root / "etc/kubernetes/manifests/kube-apiserver.yaml", c.root, address)
        server = emulated_apiserver.start(c.root, argv, address, 6443, directory / "kube-apiserver.log")
        c.procs["kube-apiserver"] = server.proc  # watched by wait_for, stopped with the others
        # As kubeadm init does with super-admin.conf: admin.conf's group becomes cluster-admin.
        node_phases.bind_cluster_admins(new_client_from_config(str(c.root / "etc/kubernetes/super-admin.conf")))
        c.start("kube-controller-manager", "kubeboot.sandbox.controllermanager", "kube-controller-manager.yaml")
        c.wait_for("kube-controller-manager /healthz", lambda: c.https_get(10257, "/healthz") == (200, "ok"))
        # A candidate is healthy before it leads: the controllers run once it holds the lease.
        leases = k8s.CoordinationV1Api(c.admin())
        c.wait_for("the controller manager to hold its lease", lambda: json.loads(leases.read_namespaced_lease(
            "kube-controller-manager", "kube-system", _preload_content=False).data)["spec"]["holderIdentity"])
        c.wait_for("the controllers to start", lambda: '"Started controller" controller="garbagecollector"'
                   in (directory / "kube-controller-manager.log").read_text())
        yield c
    finally:
        c.stop()


# --- helpers over the admin client -----------------------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def create_token(api: k8s.ApiClient, token_id: str, secret: str, *, expiration: datetime | None = None,
                 groups: str = TOKEN_GROUP, owner_of: str | None = None) -> dict[str, Any]:
    data = {"token-id": token_id, "token-secret": secret, "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true", "auth-extra-groups": groups}
    if expiration is not None:
        data["expiration"] = expiration.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
            "data": {k: b64(v) for k, v in data.items()}}
    resp = k8s.CoreV1Api(api).create_namespaced_secret("kube-system", body, _preload_content=False)
    return dict(json.loads(resp.data))


def cluster_info(api: k8s.ApiClient) -> dict[str, str]:
    resp = k8s.CoreV1Api(api).read_namespaced_config_map("cluster-info", "kube-public", _preload_content=False)
    return dict(json.loads(resp.data).get("data") or {})


def exists(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def kubeadm_verifies(kubeconfig: str, value: str, token_id: str, token_secret: str) -> bool:
    """kubeadm's discovery check (spec 3.1), written here independently of the sandbox code."""
    def enc(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = value.split(".", maxsplit=1)[0]
    if json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))).get("alg") != "HS256":
        return False
    header = enc(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    mac = hmac.new(token_secret.encode(), f"{header}.{enc(kubeconfig.encode())}".encode(), hashlib.sha256)
    return hmac.compare_digest(value, f"{header}..{enc(mac.digest())}")


@pytest.fixture(scope="module")
def signed_cluster_info(cluster: Cluster) -> dict[str, str]:
    """cluster-info as the bootstrap-token phase uploads it, and one signing token."""
    api = cluster.admin()
    kubeconfig = (f"apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: "
                  f"{base64.b64encode((cluster.pki / 'ca.crt').read_bytes()).decode()}\n"
                  f"    server: https://{cluster.address}:6443\n  name: \"\"\ncontexts: null\n"
                  "current-context: \"\"\nkind: Config\npreferences: {}\nusers: null\n")
    k8s.CoreV1Api(api).create_namespaced_config_map("kube-public", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": kubeconfig}}, _preload_content=False)
    create_token(api, "abcdef", "0123456789abcdef")
    return dict(cluster.wait_for("the bootstrap signer to sign cluster-info",
                                 lambda: (d := cluster_info(api)).get("jws-kubeconfig-abcdef") and d))


# --- tests -------------------------------------------------------------------------------------------


def test_controller_manager_health_paths_answer_ok_over_tls(cluster: Cluster) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        assert cluster.https_get(10257, path) == (200, "ok")


def test_controller_manager_serves_a_self_signed_localhost_certificate(cluster: Cluster) -> None:
    pem = ssl.get_server_certificate((cluster.address, 10257))
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value).startswith("localhost@")


def test_each_controller_has_its_service_account(cluster: Cluster) -> None:
    core = k8s.CoreV1Api(cluster.admin())
    names = {"bootstrap-signer", "token-cleaner", "certificate-controller", "generic-garbage-collector"}
    found = {n for n in names
             if exists(lambda n=n: core.read_namespaced_service_account(n, "kube-system", _preload_content=False))}
    assert found == names


def test_the_signature_the_bootstrap_signer_writes_passes_kubeadms_check(signed_cluster_info: dict[str, str]) -> None:
    value = signed_cluster_info["jws-kubeconfig-abcdef"]
    assert kubeadm_verifies(signed_cluster_info["kubeconfig"], value, "abcdef", "0123456789abcdef")


def test_the_signature_fails_kubeadms_check_for_a_wrong_token(signed_cluster_info: dict[str, str]) -> None:
    value = signed_cluster_info["jws-kubeconfig-abcdef"]
    assert not kubeadm_verifies(signed_cluster_info["kubeconfig"], value, "abcdef", "0123456789abcdeX")
    assert not kubeadm_verifies(signed_cluster_info["kubeconfig"], value, "abcdeX", "0123456789abcdef")


def test_a_deleted_token_loses_its_signature(cluster: Cluster, signed_cluster_info: dict[str, str]) -> None:
    api = cluster.admin()
    create_token(api, "gone00", "aaaaaaaaaaaaaaaa")
    cluster.wait_for("a signature for token gone00", lambda: "jws-kubeconfig-gone00" in cluster_info(api))
    k8s.CoreV1Api(api).delete_namespaced_secret("bootstrap-token-gone00", "kube-system", _preload_content=False)
    cluster.wait_for("the signature of gone00 to be removed", lambda: "jws-kubeconfig-gone00" not in cluster_info(api))
    assert "jws-kubeconfig-abcdef" in cluster_info(api)


def test_an_expired_token_is_deleted_and_so_is_the_secret_it_owns(cluster: Cluster) -> None:
    """kubeadm's upload-certs chain: kubeadm-certs is owned by a short-lived token Secret."""
    api, core = cluster.admin(), k8s.CoreV1Api(cluster.admin())
    token = create_token(api, "exp123", "bbbbbbbbbbbbbbbb", expiration=datetime.now(UTC) - timedelta(seconds=1))
    owner = {"apiVersion": "v1", "kind": "Secret", "name": token["metadata"]["name"], "uid": token["metadata"]["uid"],
             "blockOwnerDeletion": True, "controller": True}
    core.create_namespaced_secret("kube-system", {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "kubeadm-certs", "namespace": "kube-system", "ownerReferences": [owner]},
        "data": {"ca.crt": b64("encrypted")}}, _preload_content=False)
    core.create_namespaced_config_map("kube-system", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unowned", "namespace": "kube-system"}},
        _preload_content=False)

    def gone(name: str) -> bool:
        return not exists(lambda: core.read_namespaced_secret(name, "kube-system", _preload_content=False))

    cluster.wait_for("the token cleaner to delete the expired token", lambda: gone("bootstrap-token-exp123"))
    cluster.wait_for("the garbage collector to delete kubeadm-certs", lambda: gone("kubeadm-certs"))
    assert exists(lambda: core.read_namespaced_config_map("unowned", "kube-system", _preload_content=False))


def test_a_dependent_lives_while_its_owner_does(cluster: Cluster) -> None:
    core = k8s.CoreV1Api(cluster.admin())
    owner = json.loads(core.create_namespaced_config_map("default", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}, _preload_content=False).data)
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    core.create_namespaced_secret("default", {"apiVersion": "v1", "kind": "Secret",
                                              "metadata": {"name": "dependent", "ownerReferences": [ref]}},
                                  _preload_content=False)
    # A later object with an expired token proves a GC pass ran after the dependent existed.
    create_token(cluster.admin(), "mark01", "cccccccccccccccc", expiration=datetime.now(UTC) - timedelta(seconds=1))
    cluster.wait_for("the token cleaner pass", lambda: not exists(
        lambda: core.read_namespaced_secret("bootstrap-token-mark01", "kube-system", _preload_content=False)))
    assert exists(lambda: core.read_namespaced_secret("dependent", "default", _preload_content=False))
    core.delete_namespaced_config_map("owner", "default", _preload_content=False)
    cluster.wait_for("the dependent to be collected", lambda: not exists(
        lambda: core.read_namespaced_secret("dependent", "default", _preload_content=False)))


def csr_body(name: str, node: str) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    req = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])).sign(key, hashes.SHA256())
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
            "spec": {"request": base64.b64encode(req.public_bytes(serialization.Encoding.PEM)).decode(),
                     "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                     "usages": ["digital signature", "key encipherment", "client auth"]}}


def bind(api: k8s.ApiClient, name: str, role: str, group: str) -> None:
    k8s.RbacAuthorizationV1Api(api).create_cluster_role_binding({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]},
        _preload_content=False)


def test_tls_bootstrap_csr_is_approved_and_signed_only_for_the_autoapproved_group(cluster: Cluster) -> None:
    admin = cluster.admin()
    # What kubeadm's bootstrap-token phase binds (spec 2.11), plus a group allowed to post CSRs only.
    bind(admin, "kubeadm:kubelet-bootstrap", "system:node-bootstrapper", TOKEN_GROUP)
    bind(admin, "kubeadm:node-autoapprove-bootstrap",
         "system:certificates.k8s.io:certificatesigningrequests:nodeclient", TOKEN_GROUP)
    bind(admin, "test:other-bootstrap", "system:node-bootstrapper", "system:bootstrappers:other")
    create_token(admin, "boot01", "dddddddddddddddd")
    create_token(admin, "other1", "eeeeeeeeeeeeeeee", groups="system:bootstrappers:other")

    other = k8s.CertificatesV1Api(cluster.token_client("other1.eeeeeeeeeeeeeeee"))
    other.create_certificate_signing_request(csr_body("a-not-autoapproved", "w2"), _preload_content=False)
    node = k8s.CertificatesV1Api(cluster.token_client("boot01.dddddddddddddddd"))
    node.create_certificate_signing_request(csr_body("b-node-w1", "w1"), _preload_content=False)

    certs = k8s.CertificatesV1Api(admin)

    def read(name: str) -> dict[str, Any]:
        return dict(json.loads(certs.read_certificate_signing_request(name, _preload_content=False).data))

    issued = cluster.wait_for("the node's CSR to be approved and signed",
                              lambda: (c := read("b-node-w1"))["status"].get("certificate") and c)
    approved = [c for c in issued["status"]["conditions"] if c["type"] == "Approved"]
    assert [(c["status"], c["reason"]) for c in approved] == [("True", "AutoApproved")]
    cert = x509.load_pem_x509_certificate(base64.b64decode(issued["status"]["certificate"]))
    ca = x509.load_pem_x509_certificate((cluster.pki / "ca.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:w1"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert issued["spec"]["username"] == "system:bootstrap:boot01"
    # Listed first in every pass of the approver, so it was reviewed (and refused) before b was approved.
    assert not read("a-not-autoapproved").get("status", {}).get("conditions")


def test_idle_controllers_wait_on_their_watches_and_read_nothing_again(cluster: Cluster) -> None:
    """Informer-driven, as the real controllers: with nothing changing, no controller reads a collection
    twice within a few seconds (polling every 0.5-2 s read each one 2 to 8 times); they hold watches."""
    log = cluster.dir / "kube-apiserver.log"
    time.sleep(1.0)  # the last test's writes settle
    start = len(log.read_text().splitlines())
    time.sleep(4.0)  # far below the 30 s resync
    reads = collections.Counter()
    for line in log.read_text().splitlines()[start:]:
        user = line.partition('user="')[2].partition('"')[0]
        uri = line.partition('URI="')[2].partition('"')[0]
        if 'verb="GET"' in line and user.startswith("system:serviceaccount:kube-system:") and "/leases/" not in uri:
            reads[(user, uri)] += 1
    assert [key for key, count in reads.items() if count > 1] == []
    controllers = (cluster.dir / "kube-controller-manager.log").read_text()
    assert "watch of" not in controllers  # no informer failed to list or watch


@pytest.fixture
def scheduler_node(tmp_path: Path, node_phases: Any) -> Iterator[Cluster]:
    """A node with only the emulated kube-scheduler: it needs no API server to be healthy."""
    address = free_address()
    c = Cluster(tmp_path, node_phases.control_plane(tmp_path, address), address)
    try:
        c.start("kube-scheduler", "kubeboot.sandbox.scheduler", "kube-scheduler.yaml")
        yield c
    finally:
        c.stop()


def test_scheduler_health_paths_answer_ok_over_tls(scheduler_node: Cluster) -> None:
    node = scheduler_node
    node.wait_for("kube-scheduler /healthz", lambda: node.https_get(10259, "/healthz") == (200, "ok"))
    for path in ("/livez", "/readyz"):
        assert node.https_get(10259, path) == (200, "ok")
    assert node.https_get(10259, "/metrics")[0] == 403


def test_scheduler_stops_on_sigterm_with_exit_code_zero(scheduler_node: Cluster) -> None:
    node = scheduler_node
    node.wait_for("kube-scheduler /healthz", lambda: node.https_get(10259, "/healthz") == (200, "ok"))
    proc = node.procs.pop("kube-scheduler")
    proc.terminate()
    assert proc.wait(timeout=DEADLINE) == 0


@pytest.fixture
def lonely_node(tmp_path: Path, node_phases: Any) -> Cluster:
    """A generated node whose API server is never started."""
    address = free_address()
    return Cluster(tmp_path, node_phases.control_plane(tmp_path, address), address)


def test_without_an_api_server_the_controller_manager_is_a_healthy_candidate_running_no_controller(
        lonely_node: Cluster) -> None:
    """As a real one: /healthz passes while it waits for the lease (a kubelet must not restart a standby),
    the lock it cannot read is logged, and no controller starts before it leads."""
    node = lonely_node
    try:
        node.start("kube-controller-manager", "kubeboot.sandbox.controllermanager", "kube-controller-manager.yaml")
        code, text = node.wait_for("kube-controller-manager to serve /healthz",
                                   lambda: node.https_get(10257, "/healthz?verbose"))
        assert code == 200
        assert "[+]leaderElection ok" in text and "[+]controllers ok" in text
        log = node.dir / "kube-controller-manager.log"
        node.wait_for("the manager to report the unreachable API server",
                      lambda: "error retrieving resource lock" in log.read_text())
        assert '"Started controller"' not in log.read_text()
    finally:
        node.stop()


def test_without_the_ca_key_the_csr_signer_is_skipped(lonely_node: Cluster) -> None:
    """kubeadm's External CA mode writes empty --cluster-signing-*-file flags."""
    node = lonely_node
    manifest = node.root / "etc/kubernetes/manifests/kube-controller-manager.yaml"
    text = manifest.read_text()
    for flag in ("cluster-signing-cert-file", "cluster-signing-key-file"):
        text = text.replace(f"--{flag}=/etc/kubernetes/pki/{'ca.crt' if 'cert' in flag else 'ca.key'}", f"--{flag}=")
    manifest.write_text(text)
    try:
        node.start("kube-controller-manager", "kubeboot.sandbox.controllermanager", "kube-controller-manager.yaml")
        node.wait_for("the skip line", lambda: "Skipping CSR signer controller because no csr cert/key was specified"
                      in (node.dir / "kube-controller-manager.log").read_text())
    finally:
        node.stop()
