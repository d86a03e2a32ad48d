"""`kubeboot sandbox up --control-planes 3 --workers 2`: a sandbox cluster shaped for HA, end to end.

What exists before control-plane joins do: five nodes with their roles, addresses, roots, node workers and
kubelets; the cluster's load balancer on its endpoint address (127.77.<block>.254:6443) in front of the
three control-plane nodes; kubeadm.yaml naming it as controlPlaneEndpoint; an init of cp1 through that
endpoint; the kubelet of cp1 rotating kubeadm's client certificate; the supervisor bringing back a killed
node worker and a killed kubelet; and ``sandbox down`` leaving nothing running. Real processes throughout
(embedded Redis, Celery workers, etcd, the emulated control plane); waits are bounded, never timed.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.integration

NODES = [("sb1-cp1", "control-plane"), ("sb1-cp2", "control-plane"), ("sb1-cp3", "control-plane"),
         ("sb1-w1", "worker"), ("sb1-w2", "worker")]
PKI = "var/lib/kubelet/pki"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, e2e: Any) -> Iterator[Any]:
    sandbox = e2e.SandboxCluster(tmp_path_factory.mktemp("e2e-ha"))
    try:
        sandbox.up_result = sandbox.up("--control-planes", "3", "--workers", "2")
        yield sandbox
    finally:
        e2e.stop_sandbox(sandbox)


def wait_for(box: Any, what: str, ready: Callable[[], Any], deadline: float = 120.0) -> Any:
    end = time.monotonic() + deadline
    while not (value := ready()):
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting {deadline:.0f}s for {what}\n{box.logs()}")
        time.sleep(0.2)
    return value


def status(box: Any) -> dict[str, Any]:
    result = box.cli("sandbox", "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_up_makes_the_nodes_with_their_roles_and_a_load_balancer_as_the_endpoint(box: Any) -> None:
    record = box.record()
    block = record["indices"][0]
    assert [(n["name"], n["role"], n["address"], n["queue"]) for n in record["nodes"]] == [
        (name, role, f"127.77.{block}.{k}", f"node.{name}") for k, (name, role) in enumerate(NODES, start=1)]
    endpoint = f"127.77.{block}.254:6443"
    assert record["endpoints"] == {"sb1": endpoint}
    assert f"[sandbox] sb1: load balancer on {endpoint} (controlPlaneEndpoint)" in box.up_result.stdout
    docs = list(yaml.safe_load_all(box.config_path().read_text()))
    cluster = next(d for d in docs if d["kind"] == "ClusterConfiguration")
    init = next(d for d in docs if d["kind"] == "InitConfiguration")
    assert cluster["controlPlaneEndpoint"] == endpoint
    assert (init["localAPIEndpoint"]["advertiseAddress"], init["nodeRegistration"]["name"]) == (
        f"127.77.{block}.1", "sb1-cp1")
    for name, _role in NODES:
        assert (box.sandbox_dir / "sb1" / name).is_dir()
    doc = status(box)
    assert [(r["node"], r["role"], r["worker"], r["kubelet"]) for r in doc["nodes"]] == [
        (name, role, True, True) for name, role in NODES]
    (sb1,) = doc["clusters"]
    lb = sb1["loadBalancer"]
    assert (sb1["endpoint"], lb["address"], lb["up"]) == (endpoint, f"127.77.{block}.254", True)
    assert [b["address"] for b in lb["backends"]] == [f"127.77.{block}.{k}:6443" for k in (1, 2, 3)]
    assert doc["supervisor"]["up"] is True


def test_an_init_of_cp1_goes_through_the_load_balancer(box: Any) -> None:
    # kubelet-finalize restarts the kubelet; left for the rotation test to run once the rotation is seen.
    result, _run = box.init("--skip-phases", "kubelet-finalize")
    block = box.record()["indices"][0]
    endpoint = f"127.77.{block}.254:6443"
    assert f"kubeadm join {endpoint} --token" in result.stdout
    admin = box.admin_conf()
    assert admin["clusters"][0]["cluster"]["server"] == f"https://{endpoint}"
    nodes = json.loads(k8s.CoreV1Api(box.api()).list_node(_preload_content=False).data)["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["sb1-cp1"]  # read through the balancer
    sb1 = wait_for(box, "the load balancer to see cp1's API server up",
                   lambda: (c := status(box)["clusters"][0])["loadBalancer"]["backends"][0]["up"] and c)
    assert [b["up"] for b in sb1["loadBalancer"]["backends"]] == [True, False, False]
    assert [(a["node"], a["up"]) for a in sb1["apiServers"]] == [
        ("sb1-cp1", True), ("sb1-cp2", False), ("sb1-cp3", False)]
    assert [(m["name"], m["up"], m["learner"]) for m in sb1["etcdMembers"]] == [("sb1-cp1", True, False)]
    text = box.cli("sandbox", "status").stdout
    assert f"sb1      {endpoint}" in text and "sb1-cp1 up, sb1-cp2 down, sb1-cp3 down" in text


def _pems(root: Path) -> list[Path]:
    return sorted((root / PKI).glob("kubelet-client-2*.pem"))


def test_the_kubelet_of_the_init_node_rotates_kubeadms_client_certificate(box: Any) -> None:
    root = box.node_root("sb1-cp1")
    kubelet_conf = yaml.safe_load((root / "etc/kubernetes/kubelet.conf").read_text())
    embedded = base64.b64decode(kubelet_conf["users"][0]["user"]["client-certificate-data"])
    wait_for(box, "a rotated client certificate", lambda: len(_pems(root)) == 2)
    first, rotated = _pems(root)
    assert first.read_bytes().startswith(embedded.rstrip(b"\n"))  # kubeadm's pair, stored as the kubelet starts
    link = root / PKI / "kubelet-client-current.pem"
    assert str(link.readlink()) == rotated.name
    cert = x509.load_pem_x509_certificate(rotated.read_bytes())
    assert cert.serial_number != x509.load_pem_x509_certificate(embedded).serial_number
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:sb1-cp1"
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((root / "etc/kubernetes/pki/ca.crt").read_bytes()))
    csrs = json.loads(k8s.CertificatesV1Api(box.api()).list_certificate_signing_request(_preload_content=False).data)
    (csr,) = [c for c in csrs["items"] if c["metadata"]["name"].startswith("csr-")]
    assert csr["spec"]["username"] == "system:node:sb1-cp1"  # posted with the node's own certificate
    assert [c["message"] for c in csr["status"]["conditions"] if c["type"] == "Approved"] == [
        "Auto approving self kubelet client certificate after SubjectAccessReview."]
    # kubelet-finalize now has work: kubelet.conf still embeds kubeadm's pair.
    result = subprocess.run([sys.executable, "-m", "kubeboot.workers.cli", "init", "phase", "kubelet-finalize",
                             "--config", str(box.config_path()), "--root", str(root)],
                            capture_output=True, text=True, timeout=120, check=False, env=box.env)
    assert result.returncode == 0, result.stderr
    assert 'Updating "/etc/kubernetes/kubelet.conf" to point to a rotatable kubelet client certificate' in \
        result.stdout + result.stderr
    user = yaml.safe_load((root / "etc/kubernetes/kubelet.conf").read_text())["users"][0]["user"]
    assert user == {"client-certificate": "/var/lib/kubelet/pki/kubelet-client-current.pem",
                    "client-key": "/var/lib/kubelet/pki/kubelet-client-current.pem"}


def _unit(box: Any, name: str) -> dict[str, Any]:
    state = json.loads((box.sandbox_dir / "supervise-state.json").read_text())
    return dict(state["units"][name])


def test_the_supervisor_restarts_a_killed_node_worker_and_a_killed_kubelet(box: Any) -> None:
    worker = _unit(box, "node-worker-sb1-w1")
    before = worker_since(box, "node-sb1-w1")
    assert before is not None, "the node worker beats before it is killed"
    os.killpg(worker["pid"], signal.SIGKILL)
    restarted = wait_for(box, "the node worker to be restarted",
                         lambda: (u := _unit(box, "node-worker-sb1-w1"))["restarts"] == 1 and u["active"] and u)
    assert restarted["pid"] != worker["pid"]
    kubelet = _unit(box, "kubelet-sb1-w2")
    os.kill(kubelet["pid"], signal.SIGKILL)
    wait_for(box, "the kubelet to be restarted",
             lambda: (u := _unit(box, "kubelet-sb1-w2"))["restarts"] == 1 and u["pid"] not in (0, kubelet["pid"]))
    log = (box.sandbox_dir / "logs/supervise.log").read_text()
    assert "node-worker-sb1-w1.service: Main process exited, code=killed, status=9/KILL" in log
    assert "kubelet-sb1-w2.service: Main process exited, code=killed, status=9/KILL" in log

    def rows() -> dict[str, Any]:
        return {r["node"]: r for r in status(box)["nodes"]}

    found = wait_for(box, "both to run again", lambda: (n := rows())["sb1-w1"]["worker"] and n["sb1-w2"]["kubelet"]
                     and n)
    assert found["sb1-w1"]["restarts"]["worker"] == 1 and found["sb1-w2"]["restarts"]["kubelet"] == 1
    # Node workers answer no broadcast (remote control is off): the restarted one shows itself by its
    # presence beat, with a start time later than the killed one's.
    wait_for(box, "the restarted node worker to beat", lambda: (worker_since(box, "node-sb1-w1") or 0) > before)


def worker_since(box: Any, worker: str) -> int | None:
    """When the live Celery worker ``<worker>@<host>`` started (its presence beat in the sandbox's Redis)."""
    code = ("import socket; from kubeboot.workers.services import Services; "
            "from kubeboot.tasks.state.presence import worker_since; "
            f"print(worker_since(Services.connect().redis, '{worker}@' + socket.gethostname()))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                            env=box.env)
    out = result.stdout.strip()
    return int(out) if out.isdigit() else None


def test_down_stops_the_supervisor_first_then_everything(box: Any) -> None:
    record = box.record()
    units = json.loads((box.sandbox_dir / "supervise-state.json").read_text())["units"]
    pids = {record["supervisor_pid"], *(u["pid"] for u in units.values())}
    pods = [int(p.read_text()) for p in box.sandbox_dir.glob("sb1/*/var/lib/kubeboot-sandbox/pods/*/pid")]
    assert len(pods) == 4 and all(_alive(p) for p in [*pids, *pods])
    down = box.down()
    assert down.returncode == 0, down.stderr
    assert not [p for p in [*pids, *pods] if _alive(p)]
    log = (box.sandbox_dir / "logs/supervise.log").read_text()
    assert "Stopping the supervisor; units are left running." in log
    assert "Scheduled restart" not in log.split("Stopping the supervisor")[-1]  # nothing restarted behind down


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False
