"""Control-plane joins on an HA sandbox cluster (3 control planes behind the sandbox's load balancer, 2
workers), end to end: a stale etcd learner left by a dead attempt of cp3, then the two control-plane joins
submitted at the same moment, the node worker of one SIGKILLed during its etcd join, then both workers
joined at once through the load balancer. Read back as a user would: Nodes with their role labels and
taints through the official client, etcd's member list read with the cluster's healthcheck-client
certificate (one started voting member per control-plane node, the stale learner reused, no learner
left), an object written through one API server read through every other, each joined node's manifests
valid (kubernetes-validate) and carrying the node's own name and address.

Before the real joins, what a user gets wrong on a control-plane join fails with one line and writes
nothing: a wrong certificate key, an expired (deleted) kubeadm-certs Secret.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from kubernetes import client

from kubeboot.tasks.etcdclient import EtcdClient, Member

pytestmark = [pytest.mark.integration]

CP1, CP2, CP3, W1, W2 = "sb1-cp1", "sb1-cp2", "sb1-cp3", "sb1-w1", "sb1-w2"
CPS = (CP1, CP2, CP3)


@dataclass
class HA:
    box: Any
    endpoint: str  # the load balancer: controlPlaneEndpoint
    token: str
    ca_hash: str
    key: str
    results: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)
    killed: str = ""
    stale_learner: int = 0
    files_after_failures: list[str] = field(default_factory=list)


def _cp_join(h: HA, node: str, *extra: str, key: str | None = None) -> list[str]:
    return ["submit", "join", h.endpoint, "--token", h.token, "--discovery-token-ca-cert-hash", h.ca_hash,
            "--control-plane", "--certificate-key", key or h.key, "--apiserver-advertise-address",
            h.box.address(node), "--node-name", node, "--ignore-preflight-errors", "all", *extra]


def _admin(h: HA, server_node: str) -> client.ApiClient:
    """An official client with cp1's admin.conf, talking to ``server_node``'s own API server."""
    conf = h.box.admin_conf(CP1)
    conf["clusters"][0]["cluster"]["server"] = f"https://{h.box.address(server_node)}:6443"
    from kubernetes import config

    return config.new_client_from_config_dict(conf)


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory, e2e: Any) -> Iterator[HA]:
    box = e2e.SandboxCluster(tmp_path_factory.mktemp("e2e-cp-join"))
    try:
        box.up("--control-planes", "3", "--workers", "2")
        result, _ = box.init("--upload-certs")
        printed = e2e.JoinCommand.parse(result.stdout)
        endpoint = re.search(r"kubeadm join (\S+) --token", result.stdout).group(1)
        h = HA(box, endpoint, printed.token, printed.ca_hash, printed.certificate_key)
        # What a user gets wrong, first, on cp2: each fails and writes nothing.
        h.results["wrong-key"] = box.cli(*_cp_join(h, CP2, "--wait", key="ab" * 32))
        client.CoreV1Api(box.api()).delete_namespaced_secret("kubeadm-certs", "kube-system")
        h.results["expired"] = box.cli(*_cp_join(h, CP2, "--wait"))
        h.files_after_failures = box.node_files(CP2)
        upload = box.cli("init", "phase", "upload-certs", "--upload-certs", "--config", str(box.config_path()),
                         "--root", str(box.node_root(CP1)))
        assert upload.returncode == 0, upload.stderr
        h.key = re.findall(r"\b[0-9a-f]{64}\b", upload.stdout)[-1]
        # A join of cp3 that died right after adding its learner left it behind.
        h.stale_learner = _etcd(h).add_learner(f"https://{box.address(CP3)}:2380")[0].id
        # Two control-plane joins at the same moment; one node worker is killed during its etcd join.
        procs = {n: subprocess.Popen(box.command(*_cp_join(h, n, "-o", "json")), env=box.env, cwd=box.dir,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (CP2, CP3)}
        for n, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            h.runs[n] = json.loads(out)["run"]["id"]

        def in_etcd_join() -> str:
            for n in (CP2, CP3):
                for r in box.store.phase_records(h.runs[n]):
                    if r.path == "etcd-join" and r.status in ("running", "retrying"):
                        return n
            return ""

        box.wait_for("an etcd-join in progress", lambda: bool(in_etcd_join()), deadline=e2e.DEADLINE)
        h.killed = in_etcd_join()
        groups = box.worker_groups(h.killed)
        assert groups
        os.killpg(groups[0], signal.SIGKILL)
        for n in (CP2, CP3):
            box.wait_for(f"the join of {n}", lambda n=n: box.store.run_status(h.runs[n]) in ("succeeded", "failed"),
                         deadline=300)
        workers = {n: subprocess.Popen(box.command(
            "submit", "join", h.endpoint, "--token", h.token, "--discovery-token-ca-cert-hash", h.ca_hash,
            "--node-name", n, "--ignore-preflight-errors", "all", "--wait"), env=box.env, cwd=box.dir,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (W1, W2)}
        for n, proc in workers.items():
            out, err = proc.communicate(timeout=300)
            h.results[n] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        yield h
    finally:
        e2e.stop_sandbox(box)


def _etcd(h: HA) -> EtcdClient:
    """etcd as its operator reads it: the cluster's healthcheck-client certificate."""
    pki = h.box.node_root(CP1) / "etc/kubernetes/pki/etcd"
    return EtcdClient([f"https://{h.box.address(n)}:2379" for n in CPS], (pki / "ca.crt").read_bytes(),
                      (pki / "healthcheck-client.crt").read_bytes(), (pki / "healthcheck-client.key").read_bytes())


def _members(h: HA) -> list[Member]:
    return _etcd(h).members()


# --- the joins --------------------------------------------------------------------------------------


@pytest.mark.parametrize("node", [CP2, CP3])
def test_both_simultaneous_control_plane_joins_succeed(ha: HA, node: str) -> None:
    run = ha.box.store.get_run(ha.runs[node])
    assert run.status == "succeeded", f"{run.error}\n{ha.box.logs()}"
    assert run.kind == "join"


def test_the_join_whose_worker_was_killed_finished_on_its_own(ha: HA) -> None:
    assert ha.killed in (CP2, CP3)
    assert ha.box.store.get_run(ha.runs[ha.killed]).status == "succeeded"


@pytest.mark.parametrize("node", [W1, W2])
def test_workers_joined_at_once_join_through_the_load_balancer(ha: HA, node: str) -> None:
    assert ha.results[node].returncode == 0, ha.results[node].stderr
    conf = yaml.safe_load((ha.box.node_root(node) / "etc/kubernetes/kubelet.conf").read_text())
    assert conf["clusters"][0]["cluster"]["server"] == f"https://{ha.endpoint}"


def test_the_stale_learner_of_cp3_was_reused_not_added_twice(ha: HA) -> None:
    cp3 = [m for m in _members(ha) if f"https://{ha.box.address(CP3)}:2380" in m.peer_urls]
    assert [m.id for m in cp3] == [ha.stale_learner]


def test_etcd_has_one_started_voting_member_per_control_plane_node_and_no_learner(ha: HA) -> None:
    members = _members(ha)
    assert sorted(m.name for m in members) == sorted(CPS)
    assert not [m for m in members if m.is_learner]
    assert all(m.started for m in members)
    assert sorted(m.peer_urls for m in members) == sorted((f"https://{ha.box.address(n)}:2380",) for n in CPS)


def test_every_node_is_ready_with_its_role_labels_and_taints(ha: HA) -> None:
    nodes = {n.metadata.name: n for n in client.CoreV1Api(ha.box.api()).list_node().items}
    assert set(nodes) == {*CPS, W1, W2}
    for name, node in nodes.items():
        assert [c.status for c in node.status.conditions if c.type == "Ready"] == ["True"], name
        taints = [(t.key, t.effect) for t in node.spec.taints or []]
        if name in (W1, W2):
            assert taints == [] and "node-role.kubernetes.io/control-plane" not in node.metadata.labels
        else:
            assert taints == [("node-role.kubernetes.io/control-plane", "NoSchedule")], name
            assert node.metadata.labels["node-role.kubernetes.io/control-plane"] == ""
            assert node.metadata.labels["node.kubernetes.io/exclude-from-external-load-balancers"] == ""


def test_an_object_written_through_one_api_server_is_read_through_every_other(ha: HA) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "written-via-cp2"},
            "data": {"from": CP2}}
    client.CoreV1Api(_admin(ha, CP2)).create_namespaced_config_map("default", body)
    for server in CPS:
        got = client.CoreV1Api(_admin(ha, server)).read_namespaced_config_map("written-via-cp2", "default")
        assert got.data == {"from": CP2}, server


def test_sandbox_status_shows_three_api_servers_and_etcd_members_up_and_one_leader_per_lease(ha: HA) -> None:
    seen: list[dict[str, Any]] = []

    def all_up() -> bool:
        result = ha.box.cli("sandbox", "status", "-o", "json")
        assert result.returncode == 0, result.stderr
        (sb1,) = json.loads(result.stdout)["clusters"]
        seen.append(sb1)
        return all(x["up"] for x in [*sb1["apiServers"], *sb1["etcdMembers"]]) and bool(sb1["leaders"])

    # Bounded wait: a /readyz or /health answer slower than status's 2 s timeout on a loaded machine is "down".
    ha.box.wait_for("every API server and etcd member up in sandbox status", all_up, deadline=60)
    sb1 = seen[-1]
    assert [(a["node"], a["address"]) for a in sb1["apiServers"]] == [(n, ha.box.address(n)) for n in CPS]
    assert sorted((m["name"], m["learner"], m["clientURL"]) for m in sb1["etcdMembers"]) == [
        (n, False, f"https://{ha.box.address(n)}:2379") for n in CPS]
    # One holder per Lease (holderIdentity "<node>_<uuid>"), a control-plane node of this cluster.
    assert sorted(sb1["leaders"]) == ["kube-controller-manager", "kube-scheduler"]
    holders = {lease: identity.rsplit("_", 1)[0] for lease, identity in sb1["leaders"].items()}
    assert set(holders.values()) <= set(CPS), sb1["leaders"]
    text = ha.box.cli("sandbox", "status").stdout
    assert f"{CP1} up, {CP2} up, {CP3} up" in text
    assert (f"[sandbox] sb1: leaders kube-controller-manager {holders['kube-controller-manager']}, "
            f"kube-scheduler {holders['kube-scheduler']}") in text


@pytest.mark.parametrize("node", [CP2, CP3])
def test_the_joined_nodes_manifests_are_valid_and_name_the_node(ha: HA, node: str) -> None:
    root, address = ha.box.node_root(node), ha.box.address(node)
    manifests = root / "etc/kubernetes/manifests"
    assert sorted(p.name for p in manifests.iterdir()) == [
        "etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"]
    for path in manifests.iterdir():
        kubernetes_validate.validate(yaml.safe_load(path.read_text()), "1.36.0", strict=True)
    apiserver = yaml.safe_load((manifests / "kube-apiserver.yaml").read_text())["spec"]["containers"][0]["command"]
    assert f"--advertise-address={address}" in apiserver
    etcd = yaml.safe_load((manifests / "etcd.yaml").read_text())["spec"]["containers"][0]["command"]
    assert f"--name={node}" in etcd and "--initial-cluster-state=existing" in etcd
    assert f"--initial-advertise-peer-urls=https://{address}:2380" in etcd
    initial = next(a for a in etcd if a.startswith("--initial-cluster="))
    assert f"{node}=https://{address}:2380" in initial and f"{CP1}=https://{ha.box.address(CP1)}:2380" in initial


@pytest.mark.parametrize("node", [CP2, CP3])
def test_the_joined_nodes_certificates_carry_its_name_and_address(ha: HA, node: str) -> None:
    pki = ha.box.node_root(node) / "etc/kubernetes/pki"
    cert = x509.load_pem_x509_certificate((pki / "apiserver.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert node in sans.get_values_for_type(x509.DNSName)
    assert ha.box.address(node) in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    etcd = x509.load_pem_x509_certificate((pki / "etcd/server.crt").read_bytes())
    assert etcd.subject.rfc4514_string() == f"CN={node}"
    assert (pki / "ca.key").read_bytes() == (ha.box.node_root(CP1) / "etc/kubernetes/pki/ca.key").read_bytes()


@pytest.mark.parametrize("node", [CP2, CP3])
def test_the_joined_nodes_kubeconfigs_are_kubeadms_join_set(ha: HA, node: str) -> None:
    etc = ha.box.node_root(node) / "etc/kubernetes"
    assert sorted(p.name for p in etc.glob("*.conf")) == [
        "admin.conf", "controller-manager.conf", "kubelet.conf", "scheduler.conf"]  # no super-admin.conf
    kubelet = yaml.safe_load((etc / "kubelet.conf").read_text())
    assert kubelet["clusters"][0]["cluster"]["server"] == f"https://{ha.box.address(node)}:6443"  # local mode
    assert len(list((ha.box.node_root(node) / "var/lib/kubelet/pki").glob("kubelet-client-2*.pem"))) == 1


def test_the_membership_turn_is_free_after_the_joins(ha: HA) -> None:
    # The turn is keyed by the cluster's name and CA (tasks.joinrun.turn_cluster): taken (its fence counted
    # every holding), and free now.
    key = f"kubeboot:cluster:sb1-ca-{ha.ca_hash.split(':')[1][:16]}:lock:join-control-plane"
    assert int(ha.box.client().get(f"{key}:fence") or 0) >= 2
    assert ha.box.client().get(key) is None


# --- what fails ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "message"), [
    ("wrong-key", "error decoding secret data with provided key: cipher: message authentication failed"),
    ("expired", 'Secret "kubeadm-certs" was not found in the "kube-system" Namespace. This Secret might have '
                "expired. Please, run `kubeadm init phase upload-certs --upload-certs`"),
])
def test_a_control_plane_join_with_unusable_certificates_fails_with_one_line(ha: HA, name: str,
                                                                            message: str) -> None:
    result = ha.results[name]
    assert result.returncode == 1
    run = ha.box.store.list_runs()
    failed = [r for r in run if r.kind == "join" and r.status == "failed" and message in r.error]
    assert failed, [r.error for r in run]
    assert "\n" not in failed[0].error


def test_failed_control_plane_joins_wrote_nothing(ha: HA) -> None:
    assert ha.files_after_failures == []


def test_no_log_holds_the_token_secret_or_the_certificate_key(ha: HA) -> None:
    secret = ha.token.split(".")[1]
    logs = [*ha.box.dir.glob("*.log"), *(ha.box.sandbox_dir / "logs").glob("*.log"),
            *ha.box.sandbox_dir.glob("*/*/var/lib/kubeboot-sandbox/*.log")]
    assert logs
    for path in logs:
        text = path.read_text(errors="replace")
        assert secret not in text, path
        assert ha.key not in text, path
