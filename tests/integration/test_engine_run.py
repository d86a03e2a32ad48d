"""The workflow engine end to end: a real embedded Redis, real ``kubeboot worker`` processes, the real CLI.

What a run produces, how a phase's temporary and permanent errors surface, resume, and the init lock.
Faults are injected into the worker with ``--include faults`` (tests/integration/faults.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key


# --- what an artifact is, with the random parts (keys, serials, dates) taken out -------------------
def _key_kind(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return type(key).__name__


def _cert_view(pem: bytes) -> dict[str, Any]:
    cert = x509.load_pem_x509_certificate(pem)
    view: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "key": _key_kind(cert.public_key()),
        "validity": cert.not_valid_after_utc - cert.not_valid_before_utc,
    }
    for ext in cert.extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            view["san"] = sorted(str(n.value) for n in value)
        elif isinstance(value, x509.ExtendedKeyUsage):
            view["eku"] = sorted(u.dotted_string for u in value)
        elif isinstance(value, x509.BasicConstraints):
            view["ca"] = value.ca
        elif isinstance(value, x509.KeyUsage):
            view["key_usage"] = repr(value)
    return view


def _kubeconfig_view(doc: Any) -> Any:
    """The kubeconfig with each embedded certificate and key replaced by what it is."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if k in ("certificate-authority-data", "client-certificate-data"):
                import base64

                out[k] = _cert_view(base64.b64decode(v))
            elif k == "client-key-data":
                import base64

                out[k] = _key_kind(load_pem_private_key(base64.b64decode(v), None))
            else:
                out[k] = _kubeconfig_view(v)
        return out
    if isinstance(doc, list):
        return [_kubeconfig_view(v) for v in doc]
    return doc


def _view(path: Path) -> Any:
    data = path.read_bytes()
    if path.suffix == ".crt":
        return _cert_view(data)
    if path.suffix == ".key":
        return _key_kind(load_pem_private_key(data, None))
    if path.suffix == ".pub":
        return _key_kind(load_pem_public_key(data))
    if path.suffix == ".conf":
        return _kubeconfig_view(yaml.safe_load(data))
    if path.name == "node.json":  # the node marker pins its CA by hash: same shape, other CA
        marker = json.loads(data)
        marker["caCertHash"] = marker["caCertHash"][:7] + f"<{len(marker['caCertHash']) - 7} hex>"
        return marker
    return data


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(p.stat().st_mode & 0o7777) for p in root.rglob("*") if p.is_file()}


def test_a_whole_init_run_writes_what_init_phase_all_writes_for_the_same_config(engine, tmp_path: Path) -> None:
    config = engine.config()
    engine.start_workers()
    run_id = engine.submit(config)
    assert engine.wait_run(run_id) == "succeeded", engine.logs()
    local = tmp_path / "local"
    result = engine.cli("init", "phase", "all", "--config", str(config), "--root", str(local), *engine.skip)
    assert result.returncode == 0, result.stderr

    assert _tree(engine.root) == _tree(local)  # same files, same modes
    files = sorted(_tree(local))
    assert "etc/kubernetes/pki/ca.crt" in files
    assert "var/lib/kubelet/config.yaml" in files
    for rel in files:
        assert _view(engine.root / rel) == _view(local / rel), rel
    # Byte for byte where nothing random goes in: static Pod manifests and the kubelet's files.
    verbatim = [f for f in files if f.startswith(("etc/kubernetes/manifests/", "var/lib/kubelet/"))]
    names = {f.rsplit("/", 1)[-1] for f in verbatim}
    assert names >= {"config.yaml", "kubeadm-flags.env"}
    if not engine.skip:  # every phase exists: the static Pods are part of the comparison
        assert names >= {"etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"}
    for rel in verbatim:
        assert (engine.root / rel).read_bytes() == (local / rel).read_bytes(), rel
    # Two independent runs: their own keys (nothing was copied from one root to the other).
    ca_key = "etc/kubernetes/pki/ca.key"
    assert (engine.root / ca_key).read_bytes() != (local / ca_key).read_bytes()


def _events(engine, run_id: str, path: str) -> list[str]:
    return [e.event for e in engine.store.events(run_id) if e.phase == path]


def test_a_phase_failing_temporarily_twice_is_retried_and_the_run_succeeds_on_its_third_attempt(
    engine, tmp_path: Path
) -> None:
    engine.faults = [{"kind": "temporary", "phase": "kubelet-start", "times": 2, "counter": str(tmp_path / "calls")}]
    engine.start_workers()
    run_id = engine.submit(engine.config())

    assert engine.wait_run(run_id) == "succeeded", engine.logs()
    record = engine.phase(run_id, "kubelet-start")
    assert (record.status, record.attempts) == ("succeeded", 3)
    assert record.last_error == "injected temporary failure 2 of 2"
    assert _events(engine, run_id, "kubelet-start") == ["started", "retry", "started", "retry", "started", "succeeded"]
    assert (tmp_path / "calls").read_text() == "3"
    assert (engine.root / "var/lib/kubelet/config.yaml").is_file()


def test_a_permanent_error_fails_the_run_and_resume_continues_from_that_phase_only(engine, tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    engine.faults = [{"kind": "permanent", "phase": "kubeconfig/admin", "flag": str(flag)}]
    engine.start_workers()
    config = engine.config()

    submitted = engine.cli("submit", "init", "--config", str(config), "--wait", "-o", "json", *engine.skip)
    assert submitted.returncode == 1, submitted.stderr
    run_id = json.loads(submitted.stdout)["run"]["id"]
    message = f"injected permanent failure: remove {flag} to fix it"
    status = engine.cli("status", run_id, "-o", "json")
    view = json.loads(status.stdout)
    assert status.returncode == 1
    assert view["run"]["status"] == "failed"
    assert view["run"]["error"] == f"node cp1 phase kubeconfig/admin: {message}"
    failed = [p for p in view["phases"] if p["status"] == "failed"]
    assert [(p["node"], p["phase"], p["lastError"]) for p in failed] == [("cp1", "kubeconfig/admin", message)]
    text = engine.cli("status", run_id)
    assert f"error: node cp1 phase kubeconfig/admin: {message}" in text.stdout
    plan = [p["phase"] for p in view["phases"]]
    earlier = {p["phase"]: p for p in view["phases"][: plan.index("kubeconfig/admin")]}
    assert "certs/ca" in earlier
    assert {p["status"] for p in earlier.values()} == {"succeeded"}

    flag.unlink()  # the fix
    resumed = engine.cli("resume", run_id, "--wait")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = {p.path: p for p in engine.store.phase_records(run_id)}
    assert engine.store.run_status(run_id) == "succeeded"
    for path, before in earlier.items():  # not run again: same single attempt, same start
        assert (after[path].attempts, after[path].started) == (1, before["started"]), path
    assert (after["kubeconfig/admin"].status, after["kubeconfig/admin"].attempts) == ("succeeded", 2)
    assert {p.status for p in after.values()} <= {"succeeded", "skipped"}
    run_events = [e.event for e in engine.store.events(run_id) if e.is_run_event]
    assert run_events == ["submitted", "failed", "resumed", "succeeded"]


def test_of_two_concurrent_submits_of_one_cluster_exactly_one_is_accepted(engine) -> None:
    config = engine.config()
    engine.start_redis()  # no workers: the accepted run stays in flight, holding the cluster lock
    first = engine.spawn("submit-1", "submit", "init", "--config", str(config))
    second = engine.spawn("submit-2", "submit", "init", "--config", str(config))
    codes = sorted([first.wait(timeout=120), second.wait(timeout=120)])

    assert codes == [0, 1], engine.logs()
    runs = engine.store.list_runs(cluster="kubernetes")
    assert len(runs) == 1
    holder = runs[0].id
    refused = next(p for p in ("submit-1", "submit-2") if engine.procs[p].returncode == 1)
    refusal = (engine.dir / f"{refused}.log").read_text()
    assert f"error: cluster kubernetes is being initialised by run {holder} since" in refusal
    assert f"kubeboot status {holder} --watch" in refusal
