"""`kubeboot submit join` of worker nodes on a sandbox cluster (1 control plane + 4 workers), end to end,
read back as a kubeadm user would: the official ``kubernetes`` client over TLS lists the Nodes with
their labels and taints, each joined node's files are checked (kubelet.conf on the rotating client
certificate, no bootstrap token left, the cluster CA), and the errors a user meets are one clear line.

One cluster serves the module; the fixture runs the joins and the failed attempts in order (the
failures first on the node that joins last, to show they leave nothing behind), the tests read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from kubernetes import client

pytestmark = [pytest.mark.integration]

CP, W1, W2, W3, W4 = "sb1-cp1", "sb1-w1", "sb1-w2", "sb1-w3", "sb1-w4"
V4 = "kubeadm.k8s.io/v1beta4"
LABELS = {"topology.example.com/zone": "z1", "tier": "batch"}
TAINTS = [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}, {"key": "gpu", "effect": "NoExecute"}]
BAD_HASH = "sha256:" + "00" * 32
UNKNOWN_TOKEN = "zzzzzz.zzzzzzzzzzzzzzzz"


@dataclass
class Joined:
    box: Any
    join: Any  # JoinCommand printed by the init
    endpoint: str
    api: client.ApiClient
    results: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)
    ended: dict[str, tuple[str, str]] = field(default_factory=dict)  # run -> (status, error) when it ended
    files_after_failures: list[str] = field(default_factory=list)
    killed: bool = False


def _flags(c: Joined, node: str, *extra: str, token: str | None = None, ca_hash: str | None = None) -> list[str]:
    return ["submit", "join", c.endpoint, "--token", token or c.join.token, "--discovery-token-ca-cert-hash",
            ca_hash or c.join.ca_hash, "--node-name", node, "--ignore-preflight-errors", "all", *extra]


def _config(c: Joined, node: str, **over: Any) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": V4, "kind": "JoinConfiguration",
        "nodeRegistration": {"name": node, "taints": TAINTS, "ignorePreflightErrors": ["all"],
                             "kubeletExtraArgs": [{"name": "node-labels",
                                                   "value": ",".join(f"{k}={v}" for k, v in LABELS.items())}]},
        "discovery": {"bootstrapToken": {"token": c.join.token, "apiServerEndpoint": c.endpoint,
                                         "caCertHashes": [c.join.ca_hash]}},
    }
    doc.update(over)
    path = c.box.dir / f"join-{node}-{len(list(c.box.dir.glob('join-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(c: Joined, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = c.box.cli(*args)
    c.results[name] = result
    c.runs[name] = c.box.newest_run()
    run = c.box.store.get_run(c.runs[name])
    c.ended[name] = (run.status, run.error or "")
    return result


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory, e2e: Any) -> Iterator[Joined]:
    box = e2e.SandboxCluster(tmp_path_factory.mktemp("e2e-join"))
    try:
        box.up("--control-planes", "1", "--workers", "4")
        # Initialised without a controlPlaneEndpoint: workers need none, a control-plane join is refused.
        docs = list(yaml.safe_load_all(box.config_path().read_text()))
        docs[1].pop("controlPlaneEndpoint")
        no_cpe = box.dir / "kubeadm-no-cpe.yaml"
        no_cpe.write_text(yaml.safe_dump_all(docs))
        result, _ = box.init("--upload-certs", config=no_cpe)
        c = Joined(box, e2e.JoinCommand.parse(result.stdout), f"{box.address(CP)}:6443", box.api())
        _run(c, "w1", *_flags(c, W1), "--wait")
        # What a user gets wrong, on the node that joins last: each fails, each leaves nothing.
        _run(c, "wrong-hash", *_flags(c, W2, ca_hash=BAD_HASH), "--wait")
        short = {"timeouts": {"discovery": "6s"}}
        unknown = _config(c, W2, **short)
        doc = yaml.safe_load(unknown.read_text())
        doc["discovery"]["bootstrapToken"]["token"] = UNKNOWN_TOKEN
        unknown.write_text(yaml.safe_dump(doc))
        _run(c, "unknown-token", "submit", "join", "--config", str(unknown), "--wait")
        silent = _config(c, W2, **short)
        doc = yaml.safe_load(silent.read_text())
        doc["discovery"]["bootstrapToken"]["apiServerEndpoint"] = f"{box.address(CP).rsplit('.', 1)[0]}.250:6443"
        silent.write_text(yaml.safe_dump(doc))
        _run(c, "no-answer", "submit", "join", "--config", str(silent), "--wait")
        _run(c, "no-endpoint", *_flags(c, W2, "--control-plane", "--certificate-key", c.join.certificate_key,
                                        "--apiserver-advertise-address", box.address(W2)), "--wait")
        c.results["local-preflight"] = box.cli(
            "join", "phase", "preflight", c.endpoint, "--token", c.join.token, "--discovery-token-ca-cert-hash",
            c.join.ca_hash, "--node-name", "local-node", "--ignore-preflight-errors", "all",
            "--root", str(box.dir / "local-root"))
        namesake = client.CoreV1Api(c.api).create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": W2}})
        client.CoreV1Api(c.api).patch_node_status(W2, {"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "another machine"}]}})
        _run(c, "namesake", "submit", "join", "--config", str(_config(c, W2)), "--wait")
        c.files_after_failures = box.node_files(W2)
        # The other machine's Node is deleted: the failed join is resumed, not submitted again.
        client.CoreV1Api(c.api).delete_node(namesake.metadata.name)
        c.results["w2"] = box.cli("resume", c.runs["namesake"], "--wait")
        c.runs["w2"] = c.runs["namesake"]
        # W3: its node worker is SIGKILLed in the middle of the join; the sandbox restarts it.
        _run(c, "w3", *_flags(c, W3), "-o", "json")
        run_id = json.loads(c.results["w3"].stdout)["run"]["id"]
        c.runs["w3"] = run_id
        box.wait_for("w3's kubelet-start", lambda: any(r.path == "kubelet-start" and r.status in (
            "running", "succeeded") for r in box.store.phase_records(run_id)))
        for pid in box.worker_groups(W3):
            os.killpg(pid, signal.SIGKILL)
            c.killed = True
        box.wait_run(run_id)
        # W4 joins in process, no broker: `kubeboot join phase all` on its root (its kubelet already runs).
        c.results["local-all"] = box.cli("join", "phase", "all", c.endpoint, "--token", c.join.token,
                                         "--discovery-token-ca-cert-hash", c.join.ca_hash, "--node-name", W4,
                                         "--ignore-preflight-errors", "all", "--root", str(box.node_root(W4)))
        # A second join of a joined node converges: nothing new is minted.
        c.results["w1-before-again"] = subprocess.CompletedProcess([], 0, json.dumps(box.node_files(W1)), "")
        _run(c, "w1-again", *_flags(c, W1), "--wait")
        yield c
    finally:
        e2e.stop_sandbox(box)


def _node(c: Joined, name: str) -> client.V1Node:
    return client.CoreV1Api(c.api).read_node(name)


# --- the joins that succeed --------------------------------------------------------------------------


def test_the_failed_join_resumed_once_the_namesake_is_gone_succeeds(joined: Joined) -> None:
    result = joined.results["w2"]
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{joined.box.logs()}"
    run = joined.box.store.get_run(joined.runs["w2"])
    assert run.status == "succeeded" and run.kind == "join"
    phases = {p.path: p for p in joined.box.store.phase_records(run.id)}
    assert phases["preflight"].attempts == 1  # done before the failure: not run again
    assert phases["kubelet-start"].attempts == 2


@pytest.mark.parametrize("name", ["w1", "w1-again"])
def test_the_join_succeeds_with_kubeadms_closing_text(joined: Joined, name: str) -> None:
    result = joined.results[name]
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{joined.box.logs()}"
    assert "This node has joined the cluster:" in result.stdout
    assert "Run 'kubectl get nodes' on the control-plane to see this node join the cluster." in result.stdout


def test_the_killed_join_finished_by_itself_when_its_worker_came_back(joined: Joined) -> None:
    assert joined.killed, "the node worker of sb1-w3 was not found to be killed"
    run = joined.box.store.get_run(joined.runs["w3"])
    assert run.status == "succeeded", joined.box.logs()


def test_join_phase_all_joins_a_node_in_process(joined: Joined) -> None:
    result = joined.results["local-all"]
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    lines = result.stdout.splitlines()
    assert lines[0] == "[preflight] Running pre-flight checks"
    order = [line for line in lines if line.startswith("[kubelet-start]")]
    writing = "[kubelet-start] Writing kubelet"
    assert order[:3] == [f'{writing} configuration to file "/var/lib/kubelet/instance-config.yaml"',
                         f'{writing} configuration to file "/var/lib/kubelet/config.yaml"',
                         f'{writing} environment file with flags to file "/var/lib/kubelet/kubeadm-flags.env"']
    assert "This node has joined the cluster:" in result.stdout
    assert not (joined.box.node_root(W4) / "etc/kubernetes/bootstrap-kubelet.conf").exists()


def test_every_node_is_ready_through_the_official_client(joined: Joined) -> None:
    nodes = {n.metadata.name: n for n in client.CoreV1Api(joined.api).list_node().items}
    assert set(nodes) == {CP, W1, W2, W3, W4}
    for name, node in nodes.items():
        ready = [cond.status for cond in node.status.conditions if cond.type == "Ready"]
        assert ready == ["True"], name
        kubernetes_validate.validate(joined.api.sanitize_for_serialization(node) | {
            "apiVersion": "v1", "kind": "Node"}, "1.36.0", strict=True)


def test_a_worker_joined_by_flags_has_no_role_label_and_no_taint(joined: Joined) -> None:
    node = _node(joined, W1)
    assert not node.spec.taints
    assert "node-role.kubernetes.io/control-plane" not in node.metadata.labels
    assert node.metadata.labels["kubernetes.io/hostname"] == W1


def test_a_worker_joined_by_config_carries_its_labels_and_taints(joined: Joined) -> None:
    node = _node(joined, W2)
    assert {k: node.metadata.labels.get(k) for k in LABELS} == LABELS
    taints = [{k: v for k, v in t.to_dict().items() if v is not None} for t in node.spec.taints]
    assert taints == TAINTS


@pytest.mark.parametrize("name", [W1, W2, W3])
def test_kubelet_conf_uses_the_one_rotating_client_certificate_and_no_token_is_left(joined: Joined,
                                                                                     name: str) -> None:
    root = joined.box.node_root(name)
    conf = yaml.safe_load((root / "etc/kubernetes/kubelet.conf").read_text())
    user = conf["users"][0]["user"]
    assert user == {"client-certificate": "/var/lib/kubelet/pki/kubelet-client-current.pem",
                    "client-key": "/var/lib/kubelet/pki/kubelet-client-current.pem"}
    assert conf["clusters"][0]["cluster"]["server"] == f"https://{joined.endpoint}"
    assert not (root / "etc/kubernetes/bootstrap-kubelet.conf").exists()
    pems = sorted(p.name for p in (root / "var/lib/kubelet/pki").glob("kubelet-client-2*.pem"))
    assert len(pems) == 1, pems
    current = root / "var/lib/kubelet/pki/kubelet-client-current.pem"
    assert os.readlink(current) == pems[0]
    cert = x509.load_pem_x509_certificate(current.read_bytes())
    assert cert.subject.rfc4514_string() == f"CN=system:node:{name},O=system:nodes"
    ca = x509.load_pem_x509_certificate((root / "etc/kubernetes/pki/ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert (root / "etc/kubernetes/pki/ca.crt").read_bytes() == (
        joined.box.node_root(CP) / "etc/kubernetes/pki/ca.crt").read_bytes()


def test_the_kubelet_config_is_the_clusters_with_the_nodes_socket(joined: Joined) -> None:
    cm = client.CoreV1Api(joined.api).read_namespaced_config_map("kubelet-config", "kube-system")
    cluster = yaml.safe_load(cm.data["kubelet"])
    node = yaml.safe_load((joined.box.node_root(W1) / "var/lib/kubelet/config.yaml").read_text())
    assert node == cluster | {"containerRuntimeEndpoint": "unix:///var/run/containerd/containerd.sock"}
    assert (joined.box.node_root(W1) / "var/lib/kubelet/instance-config.yaml").read_text() == (
        'containerRuntimeEndpoint: "unix:///var/run/containerd/containerd.sock"\n')


def test_kubeadm_flags_of_a_tainted_worker_register_its_taints(joined: Joined) -> None:
    env = (joined.box.node_root(W2) / "var/lib/kubelet/kubeadm-flags.env").read_text()
    assert env.startswith('KUBELET_KUBEADM_ARGS="') and env.endswith('"\n')
    assert "--register-with-taints=dedicated=batch:NoSchedule,gpu:NoExecute" in env
    assert "--node-labels=topology.example.com/zone=z1,tier=batch" in env
    assert "register-with-taints" not in (joined.box.node_root(W1) / "var/lib/kubelet/kubeadm-flags.env").read_text()


def test_a_second_join_of_a_joined_node_mints_nothing(joined: Joined) -> None:
    before = json.loads(joined.results["w1-before-again"].stdout)
    assert joined.box.node_files(W1) == before


def test_joins_are_runs_of_kind_join_listed_by_runs(joined: Joined) -> None:
    listed = json.loads(joined.box.cli("runs", "-o", "json").stdout)
    kinds = {r["id"]: r["kind"] for r in listed}
    assert {kinds[joined.runs[n]] for n in ("w1", "w2", "w3", "wrong-hash")} == {"join"}
    status = joined.box.status(joined.runs["w1"])
    assert status["run"]["nodes"] == [W1]
    paths = {p["phase"]: p["status"] for p in status["phases"]}
    assert paths["kubelet-wait-bootstrap"] == "succeeded"
    assert paths["etcd-join"] == "skipped"


def test_the_token_never_reaches_the_run_records(joined: Joined) -> None:
    secret = joined.join.token.split(".")[1]
    for name in ("w1", "w2", "namesake"):
        shown = joined.box.cli("status", joined.runs[name], "-o", "json")
        assert json.loads(shown.stdout)["run"]["id"] == joined.runs[name]
        assert secret not in shown.stdout + shown.stderr


# --- the joins that fail: one line, exit 1, nothing written ------------------------------------------

FAILURES = [
    ("wrong-hash", 'cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "sha256:'),
    ("unknown-token", 'could not find a JWS signature in the cluster-info ConfigMap for token ID "zzzzzz"'),
    ("no-answer", "failed to request the cluster-info ConfigMap: Get "),
    ("no-endpoint", "unable to add a new control plane instance to a cluster that doesn't have a stable "
                    "controlPlaneEndpoint address"),
    ("namesake", f'a Node with name "{W2}" and status "Ready" already exists in the cluster. You must delete the '
                 "existing Node or change the name of this new joining Node"),
]


@pytest.mark.parametrize(("name", "message"), FAILURES, ids=[f[0] for f in FAILURES])
def test_a_failed_join_exits_1_with_kubeadms_reason(joined: Joined, name: str, message: str) -> None:
    result = joined.results[name]
    assert result.returncode == 1, result.stdout
    status, error = joined.ended[name]
    assert status == "failed"
    assert message in error
    assert "\n" not in error


def test_failed_joins_left_no_file_on_the_node(joined: Joined) -> None:
    assert joined.files_after_failures == []


def test_join_phase_preflight_runs_in_process_against_the_cluster(joined: Joined) -> None:
    result = joined.results["local-preflight"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[preflight] Running pre-flight checks\n")
    assert '[preflight] Reading configuration from the "kubeadm-config" ConfigMap in namespace "kube-system"...' in (
        result.stdout)
    assert not (joined.box.dir / "local-root" / "etc").exists()  # preflight writes nothing


def test_a_bad_flag_is_one_line_and_exit_2_before_any_run(joined: Joined) -> None:
    before = len(joined.box.store.list_runs())
    result = joined.box.cli("submit", "join", joined.endpoint, "--token", "abc", "--node-name", W1,
                            "--discovery-token-ca-cert-hash", joined.join.ca_hash)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "discovery.bootstrapToken.token" in result.stderr and "the bootstrap token is invalid" in result.stderr
    assert len(joined.box.store.list_runs()) == before
