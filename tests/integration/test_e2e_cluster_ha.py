"""An HA cluster (3 control planes behind the sandbox's load balancer + 2 workers) from ONE `kubeboot submit
cluster`, end to end, then a fourth control-plane node added later with `submit join --cluster` after
kubeadm-certs expired: the cluster run uploads the certificates again before that join. Read back as a
user would: Nodes Ready with their roles through the official client, etcd's member list (one started
voter per control-plane node, no learner), the order the child runs ran in, `status CLUSTER -o json`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubeboot.tasks.etcdclient import EtcdClient

pytestmark = pytest.mark.integration

CPS, WORKERS, LATER = ("sb1-cp1", "sb1-cp2", "sb1-cp3"), ("sb1-w1", "sb1-w2"), "sb1-cp4"
DEADLINE = "900s"  # a bound for --wait on a busy shared machine, never an assertion


@dataclass
class HA:
    box: Any
    view: dict[str, Any] = field(default_factory=dict)
    code: int = -1
    later: dict[str, Any] = field(default_factory=dict)
    later_code: int = -1

    @property
    def id(self) -> str:
        return str(self.view["cluster"]["id"])


def _cluster_file(box: Any) -> Path:
    """The sandbox's cluster.yaml without cp4: it joins later."""
    doc = yaml.safe_load(Path(box.record()["cluster_docs"]["sb1"]).read_text())
    doc["spec"]["nodes"] = [n for n in doc["spec"]["nodes"] if n["name"] != LATER]
    path = box.dir / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory, e2e: Any) -> Iterator[HA]:
    box = e2e.SandboxCluster(tmp_path_factory.mktemp("e2e-cluster-ha"))
    try:
        box.up("--control-planes", "4", "--workers", "2")
        result = box.cli("submit", "cluster", "-f", str(_cluster_file(box)), "--wait", "--timeout", DEADLINE,
                         "-o", "json")
        h = HA(box, json.loads(result.stdout or "{}"), result.returncode)
        assert h.view, f"{result.stderr}\n{box.logs()}"
        if h.code == 0:
            client.CoreV1Api(box.api()).delete_namespaced_secret("kubeadm-certs", "kube-system")  # "expired"
            later = box.cli("submit", "join", "--cluster", "sb1", "--node-name", LATER, "--control-plane",
                            "--apiserver-advertise-address", box.address(LATER), "--ignore-preflight-errors",
                            "all", "--wait", "--timeout", DEADLINE, "-o", "json")
            h.later, h.later_code = json.loads(later.stdout or "{}"), later.returncode
        yield h
    finally:
        e2e.stop_sandbox(box)


def test_one_submit_brings_up_three_control_planes_and_two_workers(ha: HA) -> None:
    assert ha.code == 0, ha.box.logs()
    assert [(n["node"], n["step"], n["status"]) for n in ha.view["nodes"]] == [
        ("sb1-cp1", "init", "succeeded"), ("sb1-cp2", "join", "succeeded"), ("sb1-cp3", "join", "succeeded"),
        ("sb1-w1", "join", "succeeded"), ("sb1-w2", "join", "succeeded")]


def _times(ha: HA, node: str) -> tuple[datetime, datetime]:
    run = ha.box.store.get_run(f"{ha.id}.{node}")
    return datetime.fromisoformat(run.created), datetime.fromisoformat(run.finished)


def test_control_planes_join_one_at_a_time_then_the_workers_together(ha: HA) -> None:
    order = [_times(ha, n) for n in (*CPS, *WORKERS)]
    for before, after in itertools.pairwise(order[:4]):
        assert before[1] <= after[0]  # each starts after the previous control plane finished
    (w1_start, w1_end), (w2_start, w2_end) = order[3], order[4]
    assert w1_start < w2_end and w2_start < w1_end  # the two workers ran side by side


def test_every_node_is_ready_with_its_role(ha: HA) -> None:
    nodes = {n.metadata.name: n for n in client.CoreV1Api(ha.box.api()).list_node().items}
    assert set(nodes) == {*CPS, *WORKERS, LATER}
    for name, node in nodes.items():
        assert [c.status for c in node.status.conditions if c.type == "Ready"] == ["True"], name
        is_cp = "node-role.kubernetes.io/control-plane" in (node.metadata.labels or {})
        assert is_cp is (name not in WORKERS), name


def test_etcd_has_one_started_voter_per_control_plane_node(ha: HA) -> None:
    pki = ha.box.node_root("sb1-cp1") / "etc/kubernetes/pki/etcd"
    etcd = EtcdClient([f"https://{ha.box.address(n)}:2379" for n in CPS], (pki / "ca.crt").read_bytes(),
                      (pki / "healthcheck-client.crt").read_bytes(), (pki / "healthcheck-client.key").read_bytes())
    members = etcd.members()
    assert sorted(m.name for m in members) == sorted([*CPS, LATER])
    assert not [m for m in members if m.is_learner] and all(m.started for m in members)


def test_a_control_plane_added_later_uploads_the_expired_certificates_again_first(ha: HA) -> None:
    assert ha.later_code == 0, ha.box.logs()
    later = ha.later["cluster"]["id"]
    assert [(n["node"], n["status"]) for n in ha.later["nodes"]] == [(LATER, "succeeded")]
    certs = ha.box.store.get_run(f"{later}.{LATER}.certs")
    assert certs is not None and certs.status == "succeeded"
    assert [r.path for r in ha.box.store.phase_records(certs.id)] == ["upload-certs"]
    assert certs.finished <= ha.box.store.get_run(f"{later}.{LATER}").created
    assert client.CoreV1Api(ha.box.api()).read_namespaced_secret("kubeadm-certs", "kube-system").data


def test_status_of_the_cluster_run_is_the_documented_json(ha: HA) -> None:
    result = ha.box.cli("status", ha.id, "-o", "json")
    view = json.loads(result.stdout)
    assert set(view) == {"cluster", "nodes", "flower"}
    assert view["flower"].endswith(f"search={ha.id}")
    assert set(view["nodes"][0]) == {"node", "step", "status", "run", "phase", "attempts", "started", "finished",
                                     "duration", "error", "waiting"}
