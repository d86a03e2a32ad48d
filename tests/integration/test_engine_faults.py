"""The workflow engine survives its parts dying: a node worker killed mid-phase, the submitting CLI killed,
the embedded Redis stopped and started again mid-run.

A run is held at a barrier (tests/integration/faults.py) while the fault is applied, then released.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

from cryptography import x509

PKI = "etc/kubernetes/pki"


def _barrier(tmp_path: Path, phase: str, when: str = "before") -> tuple[dict[str, str], Path]:
    directory = tmp_path / "barrier"
    return {"kind": "barrier", "phase": phase, "dir": str(directory), "when": when}, directory


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_node_worker_killed_mid_phase_is_replaced_and_the_phase_runs_again_on_the_same_ca(
    engine, tmp_path: Path
) -> None:
    # The barrier sits after certs/apiserver did its work and before the phase is recorded done.
    fault, barrier = _barrier(tmp_path, "certs/apiserver", when="after")
    engine.faults = [fault]
    engine.start_workers()
    run_id = engine.submit(engine.config())
    engine.wait_for("certs/apiserver to reach the barrier", (barrier / "reached").exists)
    pki = engine.root / PKI
    ca_before = _sha256(pki / "ca.crt")
    apiserver_before = _sha256(pki / "apiserver.crt")
    assert (engine.phase(run_id, "certs/ca").status, engine.phase(run_id, "certs/apiserver").status) == (
        "succeeded", "running")

    worker = engine.group("node")
    assert len(worker) >= 2  # the main process and its pool child
    engine.kill("node")  # SIGKILL to the whole group
    engine.wait_for("the killed worker's processes to be gone",
                    lambda: not any(_running(pid) for pid in worker))
    (barrier / "release").touch()
    engine.start_node()

    assert engine.wait_run(run_id) == "succeeded", engine.logs()
    assert engine.phase(run_id, "certs/apiserver").attempts == 2
    assert engine.phase(run_id, "certs/ca").attempts == 1
    assert _sha256(pki / "ca.crt") == ca_before
    assert _sha256(pki / "apiserver.crt") == apiserver_before  # the second attempt reused it
    cas = {p.name for p in pki.glob("*.crt")
           if x509.load_pem_x509_certificate(p.read_bytes()).subject.rfc4514_string() == "CN=kubernetes"}
    assert cas == {"ca.crt"}
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    for leaf in ("apiserver", "apiserver-kubelet-client"):
        x509.load_pem_x509_certificate((pki / f"{leaf}.crt").read_bytes()).verify_directly_issued_by(ca)


def test_killing_the_submitting_cli_leaves_the_run_going_and_status_reports_its_success(
    engine, tmp_path: Path
) -> None:
    fault, barrier = _barrier(tmp_path, "kubeconfig/admin")
    engine.faults = [fault]
    engine.start_workers()
    cli = engine.spawn("submit", "submit", "init", "--config", str(engine.config()), "--wait", *engine.skip)
    engine.wait_for("kubeconfig/admin to reach the barrier", (barrier / "reached").exists)

    os.killpg(cli.pid, signal.SIGKILL)
    assert cli.wait(timeout=60) == -signal.SIGKILL
    (barrier / "release").touch()

    (run,) = engine.store.list_runs()
    assert engine.wait_run(run.id) == "succeeded", engine.logs()
    status = engine.cli("status", run.id, "-o", "json")
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert view["run"]["status"] == "succeeded"
    assert {p["status"] for p in view["phases"]} <= {"succeeded", "skipped"}
    assert next(p for p in view["phases"] if p["phase"] == "kubeconfig/admin")["attempts"] == 1


def test_stopping_and_starting_redis_mid_run_loses_no_run_state_and_the_run_completes(
    engine, tmp_path: Path
) -> None:
    fault, barrier = _barrier(tmp_path, "certs/apiserver")
    engine.faults = [fault]
    engine.start_workers()
    run_id = engine.submit(engine.config())
    engine.wait_for("certs/apiserver to reach the barrier", (barrier / "reached").exists)
    store = engine.store
    run_before = store.get_run(run_id)
    phases_before = store.phase_records(run_id)
    events_before = store.events(run_id)

    engine.stop_redis()
    engine.start_redis()

    assert store.get_run(run_id) == run_before
    after = {(p.node, p.path): p for p in store.phase_records(run_id)}
    assert list(after) == [(p.node, p.path) for p in phases_before]
    done = [p for p in phases_before if p.status == "succeeded"]
    assert [p.path for p in done][:3] == ["preflight", "certs", "certs/ca"]
    for p in done:
        assert after[(p.node, p.path)] == p
    assert store.events(run_id)[: len(events_before)] == events_before

    (barrier / "release").touch()
    assert engine.wait_run(run_id) == "succeeded", engine.logs()
    for p in done:  # nothing that had succeeded ran again
        assert engine.phase(run_id, p.path).attempts == 1
