"""A join whose node worker is SIGKILLed in any of its phases, or in the middle of its etcd join, finishes
on its own once the worker comes back, end to end on one HA sandbox (2 control planes behind the load
balancer, one worker node per node phase of a worker join).

For each node phase of a worker join (``preflight``, ``kubelet-start``, ``kubelet-wait-bootstrap``: the
join tree without the control-plane-only phases), one worker node's node worker is replaced by one loaded
with the test's faults: a barrier holds that phase once its action has done its work and before its
success is recorded (``faults.py``). The second control plane's join is held inside ``etcd-join`` right
after its learner was added to etcd, before ``etcd.yaml`` exists. There each worker's whole process group
is SIGKILLed, and the sandbox's supervisor starts it again with its own command line, as systemd would.
Every join then completes by itself (no resume; the production visibility timeout of 600 s: the restarted
worker's recovery brings the phase back), and each joined node has one Node object, one kubelet client
certificate in use (one ``kubelet-client-<date>.pem``, the ``current`` link to it, one certificate
signing request), no bootstrap token left; etcd has one started voting member per control-plane node;
each phase is recorded succeeded once, every extra start explained by a retry or by the kill.

The joins are submitted together; one cluster serves the module; the fixture does the sweep, the tests read.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes import client

from kubeboot.tasks.etcdclient import EtcdClient

pytestmark = [pytest.mark.integration]

CP1, CP2 = "sb1-cp1", "sb1-cp2"
ADD_LEARNER = "kubeboot.tasks.phases.joinetcd:_add_learner"  # returns once the learner is in etcd


def worker_join_phases() -> list[str]:
    """The phases a worker join runs on its node, in order (the join tree as the canvas plans it)."""
    from kubeboot.workflows.join_tree import CONTROL_PLANE_ONLY, JOIN_PHASES
    from kubeboot.workflows.phase import walk

    return [p.path for p in walk(JOIN_PHASES, "join") if p.phase.action and p.phase.target == "node"
            and p.path.split("/")[0] not in CONTROL_PLANE_ONLY]


PHASES = worker_join_phases()
WORKERS = {f"sb1-w{i}": phase for i, phase in enumerate(PHASES, start=1)}  # node -> the phase it dies in
SWEEP = {**WORKERS, CP2: "etcd-join"}
NODES = [CP1, *SWEEP]


def _fault(node: str, gate: Path) -> dict[str, Any]:
    """The barrier ``node``'s worker dies at: after its phase's action, or cp2's right after its learner."""
    where = {"call": ADD_LEARNER} if node == CP2 else {"phase": SWEEP[node], "workflow": "join"}
    return {"kind": "barrier", **where, "node": node, "dir": str(gate), "when": "after"}


@dataclass
class Sweep:
    box: Any
    api: client.ApiClient
    etcd_at_kill: list[Any] = field(default_factory=list)  # cp2's members when its worker died
    manifest_at_kill: bool = True  # whether cp2's etcd.yaml existed then
    runs: dict[str, str] = field(default_factory=dict)  # node -> join run
    killed: dict[str, str] = field(default_factory=dict)  # node -> the phase's status when its worker died
    restarted: dict[str, int] = field(default_factory=dict)  # node -> pid of the worker the supervisor started


def _unit(node: str) -> str:
    return f"node-worker-{node}"


def _supervised_argv(box: Any, node: str) -> list[str]:
    """The node worker's command line as the sandbox's supervisor runs it (``supervise.json``)."""
    units = json.loads((box.sandbox_dir / "supervise.json").read_text())["units"]
    return list(next(u["argv"] for u in units if u["name"] == _unit(node)))


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X")
    except OSError:
        return True


def _faulty_node_worker(box: Any, node: str) -> None:
    """Stop the node's supervised worker (on purpose: the supervisor leaves it down) and start the same
    command line with the test's faults in its place."""
    from kubeboot.sandbox.supervise import stop_unit

    pid = stop_unit(box.sandbox_dir, _unit(node), signal.SIGKILL)
    box.wait_for(f"the sandbox's worker of {node} to be gone", lambda: _gone(pid))
    argv = _supervised_argv(box, node)
    box.spawn(node, *argv[argv.index("worker"):], "--include", "faults", faults=True)


def _restarted_pid(box: Any, node: str, dead: int) -> int:
    from kubeboot.sandbox.supervise import read_state

    unit = (read_state(box.sandbox_dir).get("units") or {}).get(_unit(node)) or {}
    pid = int(unit.get("pid") or 0)
    return pid if unit.get("active") and pid not in (0, dead) else 0


def _etcd(box: Any) -> EtcdClient:
    """etcd as its operator reads it: the cluster's healthcheck-client certificate."""
    pki = box.node_root(CP1) / "etc/kubernetes/pki/etcd"
    return EtcdClient([f"https://{box.address(n)}:2379" for n in (CP1, CP2)], (pki / "ca.crt").read_bytes(),
                      (pki / "healthcheck-client.crt").read_bytes(), (pki / "healthcheck-client.key").read_bytes())


def _join_flags(box: Any, endpoint: str, join: Any, node: str) -> list[str]:
    flags = ["submit", "join", endpoint, "--token", join.token, "--discovery-token-ca-cert-hash", join.ca_hash,
             "--node-name", node, "--ignore-preflight-errors", "all", "-o", "json"]
    if node == CP2:
        flags += ["--control-plane", "--certificate-key", join.certificate_key, "--apiserver-advertise-address",
                  box.address(node)]
    return flags


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, e2e: Any) -> Iterator[Sweep]:
    from kubeboot.sandbox.supervise import start_unit

    box = e2e.SandboxCluster(tmp_path_factory.mktemp("e2e-kill-sweep"))
    gates = {node: box.dir / f"gate-{node}" for node in SWEEP}
    try:
        box.up("--control-planes", "2", "--workers", str(len(WORKERS)))
        result, _ = box.init("--upload-certs")
        join = e2e.JoinCommand.parse(result.stdout)
        endpoint = re.search(r"kubeadm join (\S+) --token", result.stdout).group(1)  # the load balancer
        c = Sweep(box, box.api())
        box.faults = [_fault(node, gates[node]) for node in SWEEP]
        for node in SWEEP:
            _faulty_node_worker(box, node)
        for node in SWEEP:
            submitted = box.cli(*_join_flags(box, endpoint, join, node))
            assert submitted.returncode == 0, f"{submitted.stdout}\n{submitted.stderr}"
            c.runs[node] = json.loads(submitted.stdout)["run"]["id"]
        while len(c.killed) < len(SWEEP):  # each worker killed as soon as it is at its gate
            box.wait_for("a worker at its gate", lambda: any((gates[n] / "reached").exists() for n in SWEEP
                                                             if n not in c.killed), deadline=120)
            node = next(n for n in SWEEP if n not in c.killed and (gates[n] / "reached").exists())
            dead = box.procs[node].pid
            box.kill(node)  # SIGKILL to the worker's whole process group, mid-phase
            c.killed[node] = box.phase(c.runs[node], SWEEP[node], node).status
            if node == CP2:
                c.etcd_at_kill = _etcd(box).members()
                c.manifest_at_kill = (box.node_root(CP2) / "etc/kubernetes/manifests/etcd.yaml").exists()
            start_unit(box.sandbox_dir, _unit(node))  # back with the supervisor's own command line
            box.wait_for(f"the supervisor to start {node}'s worker again",
                         lambda n=node, d=dead: _restarted_pid(box, n, d) > 0, deadline=e2e.DEADLINE)
            c.restarted[node] = _restarted_pid(box, node, dead)
        for node in SWEEP:
            box.wait_for(f"the join of {node}", lambda n=node: box.store.run_status(c.runs[n]) in (
                "succeeded", "failed"), deadline=240)
        yield c
    finally:
        e2e.stop_sandbox(box)


def test_the_sweep_covers_every_node_phase_of_a_worker_join() -> None:
    assert PHASES == ["preflight", "kubelet-start", "kubelet-wait-bootstrap"]


@pytest.mark.parametrize("node", list(SWEEP))
def test_the_worker_died_in_the_phase_and_the_supervisor_started_its_own_command_line(sweep: Sweep,
                                                                                    node: str) -> None:
    assert sweep.killed[node] == "running"
    argv = Path(f"/proc/{sweep.restarted[node]}/cmdline").read_bytes().split(b"\0")[:-1]
    assert [a.decode() for a in argv] == _supervised_argv(sweep.box, node)


@pytest.mark.parametrize("node", list(SWEEP))
def test_the_join_finished_by_itself_each_phase_succeeded_once(sweep: Sweep, node: str) -> None:
    store = sweep.box.store
    run = store.get_run(sweep.runs[node])
    assert (run.status, run.error) == ("succeeded", None), sweep.box.logs()
    events = store.events(run.id)
    assert [e.event for e in events if e.is_run_event] == ["submitted", "succeeded"]  # never resumed
    records = {r.path: r for r in store.phase_records(run.id) if r.status != "skipped"}
    if node in WORKERS:
        assert list(records) == PHASES
    for path, record in records.items():
        mine = [e for e in events if e.phase == path]
        starts = [e.attempt for e in mine if e.event == "started"]
        retries = sum(e.event == "retry" for e in mine)
        killed = path == SWEEP[node]  # the killed copy's start, then the one that finished
        assert [e.event for e in mine if e.event in ("succeeded", "failed")] == ["succeeded"], path
        assert mine[-1].event == "succeeded", path
        assert starts == list(range(1, len(starts) + 1)), path  # one copy per attempt
        assert len(starts) == 1 + retries + killed, (path, [e.event for e in mine])
        assert (record.status, record.attempts) == ("succeeded", len(starts)), path


def test_every_node_is_one_ready_node_object(sweep: Sweep) -> None:
    nodes = client.CoreV1Api(sweep.api).list_node().items
    assert sorted(n.metadata.name for n in nodes) == sorted(NODES)
    for node in nodes:
        assert [cond.status for cond in node.status.conditions if cond.type == "Ready"] == ["True"], node.metadata.name


@pytest.mark.parametrize("node", list(SWEEP))
def test_one_kubelet_client_certificate_is_in_use(sweep: Sweep, node: str) -> None:
    root = sweep.box.node_root(node)
    pki = root / "var/lib/kubelet/pki"
    pems = sorted(p.name for p in pki.glob("kubelet-client-2*.pem"))
    assert len(pems) == 1, pems
    assert os.readlink(pki / "kubelet-client-current.pem") == pems[0]
    assert not (pki / "kubelet-client.key.tmp").exists()  # no bootstrap left half-way
    conf = yaml.safe_load((root / "etc/kubernetes/kubelet.conf").read_text())
    assert conf["users"][0]["user"] == {"client-certificate": "/var/lib/kubelet/pki/kubelet-client-current.pem",
                                        "client-key": "/var/lib/kubelet/pki/kubelet-client-current.pem"}
    assert not (root / "etc/kubernetes/bootstrap-kubelet.conf").exists()
    cert = x509.load_pem_x509_certificate((pki / pems[0]).read_bytes())
    assert cert.subject.rfc4514_string() == f"CN=system:node:{node},O=system:nodes"


@pytest.mark.parametrize("node", list(SWEEP))
def test_the_node_asked_for_one_client_certificate(sweep: Sweep, node: str) -> None:
    requests = []
    for csr in client.CertificatesV1Api(sweep.api).list_certificate_signing_request().items:
        request = x509.load_pem_x509_csr(base64.b64decode(csr.spec.request))
        if request.subject.rfc4514_string() == f"CN=system:node:{node},O=system:nodes":
            requests.append(csr.metadata.name)
    assert len(requests) == 1, requests


def test_cp2_died_with_its_learner_added_and_no_etcd_manifest(sweep: Sweep) -> None:
    cp2 = [m for m in sweep.etcd_at_kill if f"https://{sweep.box.address(CP2)}:2380" in m.peer_urls]
    assert [m.is_learner for m in cp2] == [True]
    assert not sweep.manifest_at_kill


def test_etcd_has_one_started_voting_member_per_control_plane_node(sweep: Sweep) -> None:
    members = _etcd(sweep.box).members()
    assert sorted(m.name for m in members) == [CP1, CP2]
    assert not [m for m in members if m.is_learner]
    assert all(m.started for m in members)
    assert sorted(m.peer_urls for m in members) == [(f"https://{sweep.box.address(n)}:2380",) for n in (CP1, CP2)]
