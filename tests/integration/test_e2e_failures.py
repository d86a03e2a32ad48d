"""Failures in the middle of a sandbox init's API phases: the control worker killed with SIGKILL, and the
sandbox's API server stopped for a while. The run completes once things are back, with no duplicate
object: exactly the spec inventory, two token Secrets, kubeadm-certs owned by the token that was there.

The sandbox's own control worker is replaced by one loaded with the test's faults (tests/integration/
faults.py, ``--include faults``): a barrier holds the run at a known phase while the failure is applied.
"""

from __future__ import annotations

import base64
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from kubernetes import client

pytestmark = pytest.mark.integration

NODE = "sb1-cp1"


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _faulty_control_worker(box: Any, fault: dict[str, Any]) -> None:
    """Stop the sandbox's control worker (its whole group; stopped on purpose, so the sandbox's supervisor
    does not bring it back) and start one with ``fault`` in its place."""
    from kubeboot.sandbox.supervise import stop_unit

    pid = stop_unit(box.sandbox_dir, "control-worker", signal.SIGKILL)
    box.wait_for("the sandbox's control worker to be gone", lambda: not _running(pid))
    box.faults = [fault]
    box.spawn("control-faulty", "worker", "control", "--concurrency", "1", "--name", "control-faulty",
              "--include", "faults", faults=True)


def _submit(box: Any) -> Any:
    """``submit init --upload-certs --wait`` in the background (its output in submit.log)."""
    return box.spawn("submit", "submit", "init", "--config", str(box.config_path()), "--upload-certs", "--wait")


def _finished(box: Any, proc: Any) -> str:
    """Wait for the background submit; returns what it printed. It must report success."""
    box.wait_for("the submitted init to finish", lambda: proc.poll() is not None, deadline=box.e2e_deadline)
    output = (box.dir / "submit.log").read_text()
    assert proc.returncode == 0, f"{output}\n{box.logs()}"
    return output


def _tokens(api: Any) -> dict[str, client.V1Secret]:
    return {s.metadata.name: s for s in client.CoreV1Api(api).list_namespaced_secret("kube-system").items
            if s.type == "bootstrap.kubernetes.io/token"}


def _assert_no_duplicates(box: Any, e2e: Any, output: str) -> None:
    api = box.api()
    assert e2e.kubeadm_inventory(box.objects(api)) == e2e.SPEC_INVENTORY
    join = e2e.JoinCommand.parse(output)
    tokens = _tokens(api)
    assert f"bootstrap-token-{join.token.split('.')[0]}" in tokens
    certs = client.CoreV1Api(api).read_namespaced_secret("kubeadm-certs", "kube-system")
    (owner,) = certs.metadata.owner_references
    assert (owner.name, owner.uid) in {(n, s.metadata.uid) for n, s in tokens.items()}
    sealed = base64.b64decode(certs.data["ca.crt"])  # the printed key opens what is stored
    ca = (box.node_root(NODE) / "etc/kubernetes/pki/ca.crt").read_bytes()
    assert AESGCM(bytes.fromhex(join.certificate_key)).decrypt(sealed[:12], sealed[12:], None) == ca


@pytest.fixture
def box(sandbox: Any, e2e: Any) -> Any:
    sandbox.e2e_deadline = e2e.DEADLINE
    sandbox.up("--nodes", "1")
    return sandbox


def test_a_control_worker_killed_after_bootstrap_token_did_its_work_leaves_one_default_token_and_the_run_completes(
    box: Any, e2e: Any, tmp_path: Path
) -> None:
    barrier = tmp_path / "barrier"
    # After the phase's own work (the generated token's Secret is written), before it is recorded done:
    # the retry on another worker must find that token in the run's secrets, not mint a second one.
    _faulty_control_worker(box, {"kind": "barrier", "phase": "bootstrap-token", "dir": str(barrier), "when": "after"})
    submit = _submit(box)
    box.wait_for("bootstrap-token to reach the barrier", (barrier / "reached").exists, deadline=e2e.DEADLINE)
    api = box.api()
    before = {name: s.metadata.uid for name, s in _tokens(api).items()}
    assert len(before) == 2  # the 2-hour upload-certs token and the default one

    worker = box.group("control-faulty")
    box.kill("control-faulty")  # SIGKILL to the main process and its pool child
    box.wait_for("the killed worker's processes to be gone", lambda: not any(_running(p) for p in worker))
    (barrier / "release").touch()
    box.spawn("control", "worker", "control", "--concurrency", "1", "--name", "control-again")

    output = _finished(box, submit)
    run_id = box.newest_run()
    assert box.store.run_status(run_id) == "succeeded"
    assert box.phase(run_id, "bootstrap-token", node=NODE).attempts == 2
    _assert_no_duplicates(box, e2e, output)
    assert {name: s.metadata.uid for name, s in _tokens(api).items()} == before  # reused, none replaced
    token_id = e2e.JoinCommand.parse(output).token.split(".")[0]
    assert f"bootstrap-token-{token_id}" in before  # the printed token is the one made before the kill


def _refused(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((address, port)) != 0


def test_an_api_server_stopped_during_the_api_phases_holds_the_run_until_it_is_back(
    box: Any, e2e: Any, tmp_path: Path
) -> None:
    barrier = tmp_path / "barrier"
    _faulty_control_worker(box, {"kind": "barrier", "phase": "upload-config/kubelet", "dir": str(barrier)})
    submit = _submit(box)
    box.wait_for("upload-config/kubelet to reach the barrier", (barrier / "reached").exists, deadline=e2e.DEADLINE)
    run_id = box.newest_run()

    manifest = box.node_root(NODE) / "etc/kubernetes/manifests/kube-apiserver.yaml"
    parked = tmp_path / "kube-apiserver.yaml"
    address = box.address(NODE)
    manifest.rename(parked)  # the sandbox kubelet stops the static pod whose manifest is gone
    try:
        box.wait_for("the API server to stop listening", lambda: _refused(address, 6443), deadline=e2e.DEADLINE)
        (barrier / "release").touch()
        box.wait_for("upload-config/kubelet to fail on the missing API server",
                     lambda: bool(box.phase(run_id, "upload-config/kubelet", node=NODE).last_error),
                     deadline=e2e.DEADLINE)
        during = box.phase(run_id, "upload-config/kubelet", node=NODE)
        assert during.status in ("retrying", "running")
        assert box.store.run_status(run_id) == "running"
    finally:
        parked.rename(manifest)

    output = _finished(box, submit)
    assert box.store.run_status(run_id) == "succeeded"
    assert box.phase(run_id, "upload-config/kubelet", node=NODE).attempts >= 2
    _assert_no_duplicates(box, e2e, output)
    assert len(_tokens(box.api())) == 2
