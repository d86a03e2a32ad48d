"""The ways into a cluster other than a pinned token, end to end on a sandbox (1 control plane + 3 workers),
read back with the official ``kubernetes`` client over TLS:

- ``--discovery-file`` with a kubeconfig made from the cluster's ``cluster-info`` (what `kubeadm join
  --discovery-file` users do) and ``--tls-bootstrap-token``: the file is deleted right after `submit join`
  returns, and the node still joins (the run carries the file's text; the node never reads the path);
- ``--discovery-token-unsafe-skip-ca-verification`` with no CA hash;
- a bootstrap token whose expiration is past: exit 1, kubeadm's JWS-not-found reason, nothing written;
- ``--skip-phases`` through `submit join` and `join phase all`: the phases recorded skipped, their files absent;
- the control-plane join phases run one by one with `kubeboot join phase` against a node root (no broker),
  with kubeadm's ``[download-certs]`` / ``[certs]`` / ``[kubeconfig]`` / ``[control-plane]`` lines.

One cluster serves the module; the fixture does every join in order, the tests read.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes import client

pytestmark = [pytest.mark.integration]

CP, W1, W2, W3 = "sb1-cp1", "sb1-w1", "sb1-w2", "sb1-w3"
V4 = "kubeadm.k8s.io/v1beta4"
EXPIRED_ID, EXPIRED_SECRET = "exp1rd", "0123456789abcdef"
LOCAL_CP_ADDRESS = "10.20.30.40"  # the local control-plane's advertise address: in its SANs and manifests
SKIPPED = "kubelet-start,kubelet-wait-bootstrap"
KUBELET_START_FILES = ["etc/kubernetes/bootstrap-kubelet.conf", "etc/kubernetes/pki/ca.crt",
                       "var/lib/kubelet/config.yaml", "var/lib/kubelet/instance-config.yaml",
                       "var/lib/kubelet/kubeadm-flags.env"]


@dataclass
class Joins:
    box: Any
    join: Any  # JoinCommand printed by the init
    endpoint: str
    api: client.ApiClient
    results: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)
    discovery_file: Path = Path()
    stored_config: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)


def _token_flags(c: Joins, node: str, *extra: str) -> list[str]:
    return [c.endpoint, "--token", c.join.token, "--discovery-token-ca-cert-hash", c.join.ca_hash,
            "--node-name", node, "--ignore-preflight-errors", "all", *extra]


def _submit(c: Joins, name: str, *args: str) -> None:
    c.results[name] = c.box.cli("submit", "join", *args)
    c.runs[name] = c.box.newest_run()


def _expired_token(api: client.ApiClient) -> None:
    """A bootstrap token Secret whose expiration is past, as `kubeadm token create --ttl` leaves one."""
    data = {"token-id": EXPIRED_ID, "token-secret": EXPIRED_SECRET, "expiration": "2020-01-01T00:00:00Z",
            "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
            "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"}
    client.CoreV1Api(api).create_namespaced_secret("kube-system", {
        "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": f"bootstrap-token-{EXPIRED_ID}", "namespace": "kube-system"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})


def _local(c: Joins, name: str, path: str, root: Path, *flags: str) -> None:
    c.results[name] = c.box.cli("join", "phase", path, *flags, "--root", str(root))


@pytest.fixture(scope="module")
def joins(tmp_path_factory: pytest.TempPathFactory, e2e: Any) -> Iterator[Joins]:
    box = e2e.SandboxCluster(tmp_path_factory.mktemp("e2e-join-discovery"))
    try:
        box.up("--control-planes", "1", "--workers", "3")
        result, _ = box.init("--upload-certs")
        c = Joins(box, e2e.JoinCommand.parse(result.stdout), f"{box.address(CP)}:6443", box.api())
        # W1 by --discovery-file: cluster-info's kubeconfig, as `kubectl -n kube-public get cm cluster-info` gives it.
        info = client.CoreV1Api(c.api).read_namespaced_config_map("cluster-info", "kube-public")
        c.discovery_file = box.dir / "discovery.conf"
        c.discovery_file.write_text(info.data["kubeconfig"])
        _submit(c, "file", "--discovery-file", str(c.discovery_file), "--tls-bootstrap-token", c.join.token,
                "--node-name", W1, "--ignore-preflight-errors", "all", "-o", "json")
        c.discovery_file.unlink()  # the submitter's copy is gone before the node gets to discovery
        c.stored_config = box.store.run_config(c.runs["file"])
        box.wait_run(c.runs["file"])
        # W2 without a CA pin.
        _submit(c, "unsafe", c.endpoint, "--token", c.join.token, "--discovery-token-unsafe-skip-ca-verification",
                "--node-name", W2, "--ignore-preflight-errors", "all", "--wait")
        # W3: an expired token first (fails, leaves nothing), then a join that skips the kubelet's phases.
        _expired_token(c.api)
        expired = box.dir / "join-expired.yaml"
        expired.write_text(yaml.safe_dump({
            "apiVersion": V4, "kind": "JoinConfiguration", "timeouts": {"discovery": "6s"},
            "nodeRegistration": {"name": W3, "ignorePreflightErrors": ["all"]},
            "discovery": {"bootstrapToken": {"token": f"{EXPIRED_ID}.{EXPIRED_SECRET}",
                                             "apiServerEndpoint": c.endpoint, "caCertHashes": [c.join.ca_hash]}}}))
        _submit(c, "expired", "--config", str(expired), "--wait")
        c.files["expired"] = box.node_files(W3)
        _submit(c, "skip", *_token_flags(c, W3, "--skip-phases", SKIPPED, "--wait"))
        c.files["skip"] = box.node_files(W3)
        # In process, no broker: the same skip with `join phase all`, and a control-plane join's prepare phases.
        _local(c, "local-skip", "all", box.dir / "local-worker", *_token_flags(c, "local-w", "--skip-phases", SKIPPED))
        cp_flags = _token_flags(c, "local-cp", "--control-plane", "--certificate-key", c.join.certificate_key,
                                "--apiserver-advertise-address", LOCAL_CP_ADDRESS)
        for phase in ("download-certs", "certs", "kubeconfig", "control-plane"):
            _local(c, phase, f"control-plane-prepare/{phase}", box.dir / "local-cp", *cp_flags)
        _local(c, "prepare-skip", "control-plane-prepare", box.dir / "local-cp-skip", *cp_flags,
               "--skip-phases", "control-plane-prepare/kubeconfig")
        yield c
    finally:
        e2e.stop_sandbox(box)


def _ok(c: Joins, name: str) -> subprocess.CompletedProcess[str]:
    result = c.results[name]
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{c.box.logs()}"
    return result


def _ready(c: Joins, name: str) -> bool:
    node = client.CoreV1Api(c.api).read_node(name)
    return [cond.status for cond in node.status.conditions if cond.type == "Ready"] == ["True"]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


# --- --discovery-file ----------------------------------------------------------------------------------


def test_a_worker_joins_with_a_discovery_file_deleted_after_submit(joins: Joins) -> None:
    _ok(joins, "file")
    run = joins.box.store.get_run(joins.runs["file"])
    assert run.status == "succeeded", f"{run.error}\n{joins.box.logs()}"
    assert not joins.discovery_file.exists()
    assert _ready(joins, W1)
    conf = yaml.safe_load((joins.box.node_root(W1) / "etc/kubernetes/kubelet.conf").read_text())
    assert conf["users"][0]["user"]["client-certificate"] == "/var/lib/kubelet/pki/kubelet-client-current.pem"
    assert not (joins.box.node_root(W1) / "etc/kubernetes/bootstrap-kubelet.conf").exists()


def test_the_file_join_run_carries_the_kubeconfig_the_submitter_read(joins: Joins) -> None:
    carried = [d for d in joins.stored_config if d.get("kind") == "DiscoveryFile"]
    assert len(carried) == 1
    info = client.CoreV1Api(joins.api).read_namespaced_config_map("cluster-info", "kube-public")
    assert carried[0]["kubeConfig"] == info.data["kubeconfig"]
    assert carried[0]["kubeConfigPath"] == str(joins.discovery_file)
    raw = b"".join(v for v in joins.box.client().hgetall(f"kubeboot:run:{joins.runs['file']}").values())
    assert b"certificate-authority-data" not in raw  # encrypted with the run's config, never in clear


# --- --discovery-token-unsafe-skip-ca-verification -------------------------------------------------------


def test_a_worker_joins_without_a_ca_pin_when_told_it_is_unsafe(joins: Joins) -> None:
    result = _ok(joins, "unsafe")
    assert "This node has joined the cluster:" in result.stdout
    assert _ready(joins, W2)
    ca = (joins.box.node_root(W2) / "etc/kubernetes/pki/ca.crt").read_bytes()
    assert ca == (joins.box.node_root(CP) / "etc/kubernetes/pki/ca.crt").read_bytes()
    x509.load_pem_x509_certificate(ca)


# --- an expired token ------------------------------------------------------------------------------------


def test_an_expired_token_fails_with_kubeadms_reason_and_writes_nothing(joins: Joins) -> None:
    result = joins.results["expired"]
    assert result.returncode == 1, result.stdout
    run = joins.box.store.get_run(joins.runs["expired"])
    assert run.status == "failed"
    assert (f'could not find a JWS signature in the cluster-info ConfigMap for token ID "{EXPIRED_ID}"'
            in (run.error or "")), run.error
    assert "\n" not in (run.error or "")
    assert EXPIRED_SECRET not in result.stdout + result.stderr + (run.error or "")
    assert joins.files["expired"] == []


# --- --skip-phases -----------------------------------------------------------------------------------------


def test_submit_join_records_skipped_phases_and_writes_none_of_their_files(joins: Joins) -> None:
    result = _ok(joins, "skip")
    phases = {p["phase"]: p["status"] for p in joins.box.status(joins.runs["skip"])["phases"]}
    assert (phases["preflight"], phases["kubelet-start"], phases["kubelet-wait-bootstrap"]) == (
        "succeeded", "skipped", "skipped")
    assert not set(KUBELET_START_FILES) & set(joins.files["skip"])
    assert "This node has joined the cluster" not in result.stdout  # the kubelet never bootstrapped
    assert W3 not in {n.metadata.name for n in client.CoreV1Api(joins.api).list_node().items}


def test_join_phase_all_skips_the_phases_named(joins: Joins) -> None:
    result = _ok(joins, "local-skip")
    assert result.stdout.startswith("[preflight] Running pre-flight checks\n")
    assert "[kubelet-start]" not in result.stdout
    assert "This node has joined the cluster" not in result.stdout
    assert _files(joins.box.dir / "local-worker") == set()


def test_join_phase_control_plane_prepare_leaves_out_a_skipped_sub_phase(joins: Joins) -> None:
    result = _ok(joins, "prepare-skip")
    assert "[kubeconfig]" not in result.stdout
    assert '[control-plane] Creating static Pod manifest for "kube-apiserver"' in result.stdout
    files = _files(joins.box.dir / "local-cp-skip")
    assert {"etc/kubernetes/pki/apiserver.crt", "etc/kubernetes/manifests/kube-apiserver.yaml"} <= files
    assert not {f for f in files if f.endswith(".conf")}


# --- the control-plane join phases one by one, in process ----------------------------------------------------

PHASE_LINES = {
    "download-certs": ['[download-certs] Downloading the certificates in Secret "kubeadm-certs" in the '
                       '"kube-system" Namespace',
                       '[download-certs] Saving the certificates to the folder: "/etc/kubernetes/pki"'],
    "certs": ['[certs] Using certificateDir folder "/etc/kubernetes/pki"',
              '[certs] Generating "apiserver" certificate and key',
              '[certs] Using the existing "sa" key'],
    "kubeconfig": ["[kubeconfig] Generating kubeconfig files",
                   '[kubeconfig] Using kubeconfig folder "/etc/kubernetes"',
                   '[kubeconfig] Writing "admin.conf" kubeconfig file'],
    "control-plane": ['[control-plane] Using manifest folder "/etc/kubernetes/manifests"',
                      '[control-plane] Creating static Pod manifest for "kube-apiserver"',
                      '[control-plane] Creating static Pod manifest for "kube-controller-manager"',
                      '[control-plane] Creating static Pod manifest for "kube-scheduler"'],
}


@pytest.mark.parametrize("phase", list(PHASE_LINES))
def test_join_phase_control_plane_prepare_prints_kubeadms_lines(joins: Joins, phase: str) -> None:
    lines = _ok(joins, phase).stdout.splitlines()
    for line in PHASE_LINES[phase]:
        assert line in lines, "\n".join(lines)
    assert all(line.startswith(f"[{phase}]") for line in lines if line.startswith("[") and not line.startswith(
        "[preflight]")), "\n".join(lines)


def test_the_local_control_plane_has_its_own_certificates_kubeconfigs_and_manifests(joins: Joins) -> None:
    root = joins.box.dir / "local-cp"
    files = _files(root)
    assert {"etc/kubernetes/admin.conf", "etc/kubernetes/controller-manager.conf",
            "etc/kubernetes/scheduler.conf"} <= files
    assert not {"etc/kubernetes/super-admin.conf", "etc/kubernetes/kubelet.conf"} & files
    ca = (joins.box.node_root(CP) / "etc/kubernetes/pki/ca.crt").read_bytes()
    assert (root / "etc/kubernetes/pki/ca.crt").read_bytes() == ca  # the cluster's, downloaded
    cert = x509.load_pem_x509_certificate((root / "etc/kubernetes/pki/apiserver.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "local-cp" in sans.get_values_for_type(x509.DNSName)
    assert LOCAL_CP_ADDRESS in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))
    manifest = yaml.safe_load((root / "etc/kubernetes/manifests/kube-apiserver.yaml").read_text())
    assert f"--advertise-address={LOCAL_CP_ADDRESS}" in manifest["spec"]["containers"][0]["command"]
