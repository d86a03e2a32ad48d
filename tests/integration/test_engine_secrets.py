"""No secret of a run is readable where the engine keeps or shows it: not in any Redis key (kubeboot's
run state and Celery's own messages), not in Flower; and, for a full sandbox init with --upload-certs,
not in any log file (workers, Flower, kubelet, static Pods), event or Flower task page either, while
the submitter still gets the join commands from the run state.

Values are searched as stored and decoded: Celery keeps message bodies base64-encoded inside JSON, and
a kubeconfig embeds its PEM blocks base64-encoded, so every base64-looking string is decoded (nested)
and searched too.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kubeboot.config.settings import parse_secret_key

TOKEN = "q7x2kd.m4v9t1z8r3p6w0yb"  # bootstrapTokens[0].token of the run's config
PEM = b"-----BEGIN"
_B64 = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")


def _decoded(value: bytes, depth: int = 0) -> list[bytes]:
    """``value`` and everything base64 inside it decodes to, a few levels deep."""
    found = [value]
    if depth >= 4:
        return found
    for chunk in _B64.findall(value):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            with contextlib.suppress(binascii.Error, ValueError):
                found += _decoded(decode(chunk + b"=" * (-len(chunk) % 4)), depth + 1)
    return found


def _redis_values(client: Any) -> dict[str, list[bytes]]:
    """Every key of the server with every value it holds, whatever its type."""
    out: dict[str, list[bytes]] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key)]
        elif kind == "hash":
            values = [b for pair in client.hgetall(key).items() for b in pair]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [b for _, fields in client.xrange(key) for pair in fields.items() for b in pair]
        elif kind == "none":  # expired between SCAN and TYPE
            continue
        else:
            pytest.fail(f"key {key!r} has type {kind}, which this scan does not read")
        out[key.decode()] = [v for v in values if v is not None]
    return out


def _needles(engine) -> dict[str, bytes]:
    """What must never be found: PEM blocks (also base64-wrapped, as in kubeconfigs), the token and
    its secret half, a kubeconfig's key field, and kubeboot's own encryption key."""
    key_file = engine.state_dir / "secret.key"
    return {
        "PEM block": PEM,
        "base64 PEM block": base64.b64encode(PEM + b"-")[:12],
        "bootstrap token": TOKEN.encode(),
        "bootstrap token secret": TOKEN.split(".")[1].encode(),
        "kubeconfig key": b"client-key-data",
        "secret key file": key_file.read_bytes().strip(),
        "secret key": parse_secret_key(key_file.read_text(), source="secret.key"),
    }


def _leaks(haystack: dict[str, list[bytes]], needles: dict[str, bytes]) -> list[str]:
    return sorted({f"{what} in {key}" for key, values in haystack.items() for value in values
                   for plain in _decoded(value) for what, needle in needles.items() if needle in plain})


def test_no_key_token_or_kubeconfig_is_in_clear_in_any_redis_key_during_and_after_a_run(
    engine, tmp_path: Path
) -> None:
    barrier = tmp_path / "barrier"
    engine.faults = [{"kind": "barrier", "phase": "kubelet-start", "dir": str(barrier)}]
    engine.start_workers()
    run_id = engine.submit(engine.config(token=TOKEN))
    # In flight, after every certificate and kubeconfig exists: Celery holds the phase's message.
    engine.wait_for("kubelet-start to reach the barrier", (barrier / "reached").exists)
    client = engine.client()
    during = _redis_values(client)
    (barrier / "release").touch()
    assert engine.wait_run(run_id) == "succeeded", engine.logs()
    after = _redis_values(client)

    assert (engine.root / "etc/kubernetes/admin.conf").is_file()
    assert {f"kubeboot:run:{run_id}", f"kubeboot:run:{run_id}:events"} <= set(during)
    # kubelet-start's message, held unacked by the worker (or back in its queue after the visibility timeout)
    assert {"unacked", "node.cp1"} & set(during)
    assert any(k.startswith("_kombu.binding.") for k in after)
    needles = _needles(engine)
    # The search sees through the wrapping a leak would have: base64 inside JSON, like a Celery body.
    probe = json.dumps({"body": base64.b64encode(b'["r-1", "' + TOKEN.encode() + b'"]').decode()}).encode()
    assert _leaks({"probe": [probe]}, needles) == ["bootstrap token in probe", "bootstrap token secret in probe"]
    assert _leaks(during, needles) == []
    assert _leaks(after, needles) == []


# --- Flower -----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, auth: str | None = "u:p") -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def test_flower_shows_every_phase_by_name_with_the_run_id_and_no_secret(engine) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    engine.start_workers()
    engine.spawn("flower", "flower", "--port", str(port), "--basic-auth", "u:p")
    # Flower sees task events only once it listens: wait until the node worker's heartbeats reach it.
    engine.wait_for("Flower to see the node worker",
                    lambda: b'flower_worker_online{worker="node-cp1@' in _get(f"{base}/metrics")[1])
    run_id = engine.submit(engine.config(token=TOKEN))
    assert engine.wait_run(run_id) == "succeeded", engine.logs()
    ran = [r.path for r in engine.store.phase_records(run_id) if r.status == "succeeded"]
    expected = {f"kubeboot.init.{p.replace('/', '.')}" for p in ran}
    tasks: dict[str, Any] = {}

    def listed() -> bool:
        status, body = _get(f"{base}/api/tasks?limit=1000")
        tasks.clear()
        if status == 200:
            tasks.update({k: v for k, v in json.loads(body).items() if run_id in str(v.get("args"))})
        return expected <= {t.get("name") for t in tasks.values()}

    engine.wait_for("Flower to list the run's phases", listed)

    assert _get(f"{base}/api/tasks", auth=None)[0] == 401
    assert _get(f"{base}/api/tasks", auth="u:wrong")[0] == 401
    phase_tasks = {t["name"]: t for t in tasks.values() if t["name"].startswith("kubeboot.init.")}
    assert set(phase_tasks) == expected
    assert "kubeboot.init.certs.ca" in phase_tasks
    for name, task in phase_tasks.items():
        assert run_id in task["args"] and "cp1" in task["args"], name
        assert task["state"] == "SUCCESS", name
    status, body = _get(f"{base}/api/tasks?limit=1000")
    assert status == 200
    assert _leaks({"/api/tasks": [body]}, _needles(engine)) == []


# --- a full sandbox init with --upload-certs: logs, Redis, Flower, events ------------------------------
# The real secrets of the run are read back from the cluster (the bootstrap token Secrets, through the
# official client with the node's admin.conf) and from `status --show-join-command` (the certificate
# key); then every place a person or a log shipper can read is searched for them.

SECRET_TTL = 7200  # KUBEBOOT_SECRET_TTL of the sandbox's processes, seconds
NODE = "sb1-cp1"


class SandboxRun:
    def __init__(self, box: Any, run_id: str, flower: str, e2e: Any) -> None:
        self.box, self.run_id, self.flower, self.e2e = box, run_id, flower, e2e

    def token_secrets(self) -> dict[str, str]:
        """token id -> token secret of every bootstrap token Secret in the cluster."""
        from kubernetes import client

        secrets = client.CoreV1Api(self.box.api(NODE)).list_namespaced_secret("kube-system").items
        data = [{k: base64.b64decode(v).decode() for k, v in (s.data or {}).items()} for s in secrets
                if s.type == "bootstrap.kubernetes.io/token"]
        return {d["token-id"]: d["token-secret"] for d in data}

    def join_text(self) -> str:
        shown = self.box.cli("status", self.run_id, "--show-join-command")
        assert shown.returncode == 0, shown.stderr
        return str(shown.stdout)

    def needles(self) -> dict[str, bytes]:
        key = self.e2e.JoinCommand.parse(self.join_text()).certificate_key
        key_file = self.box.state_dir / "secret.key"
        found = {f"secret of token {i}": s.encode() for i, s in self.token_secrets().items()}
        return {**found, "certificate key": key.encode(), "PRIVATE KEY": b"PRIVATE KEY",
                "secret key file": key_file.read_bytes().strip(),
                "secret key": parse_secret_key(key_file.read_text(), source="secret.key")}

    def log_files(self) -> dict[str, list[bytes]]:
        """Every log file of the test: workers, Flower, sandbox kubelet, static pods (etcd, apiserver, ...)."""
        return {str(p.relative_to(self.box.dir)): [p.read_bytes()] for p in sorted(self.box.dir.rglob("*.log"))}


@pytest.fixture(scope="module")
def sandbox_run(tmp_path_factory: pytest.TempPathFactory, e2e: Any) -> Any:
    box = e2e.SandboxCluster(tmp_path_factory.mktemp("secrets"))
    box.env["KUBEBOOT_SECRET_TTL"] = f"{SECRET_TTL // 3600}h"
    port = _free_port()
    try:
        box.up("--nodes", "1")
        box.spawn("flower", "flower", "--port", str(port), "--basic-auth", "u:p")
        base = f"http://127.0.0.1:{port}"
        box.wait_for("Flower to see the node worker",
                     lambda: f'flower_worker_online{{worker="node-{NODE}@'.encode() in _get(f"{base}/metrics")[1],
                     e2e.DEADLINE)
        _, run_id = box.init("--upload-certs")
        yield SandboxRun(box, run_id, base, e2e)
    finally:
        e2e.stop_sandbox(box)


def _flower_views(run: SandboxRun) -> dict[str, list[bytes]]:
    """Flower's task list and every task page of the run, once Flower has seen every phase end."""
    ran = {r.path for r in run.box.store.phase_records(run.run_id) if r.status == "succeeded"}
    expected = {f"kubeboot.init.{p.replace('/', '.')}" for p in ran} | {"kubeboot.run.finish"}
    tasks: dict[str, Any] = {}

    def listed() -> bool:
        status, body = _get(f"{run.flower}/api/tasks?limit=1000")
        tasks.clear()
        if status == 200:
            tasks.update({k: v for k, v in json.loads(body).items() if run.run_id in str(v.get("args"))})
        return expected <= {t.get("name") for t in tasks.values() if t.get("state") == "SUCCESS"}

    run.box.wait_for("Flower to list the run's tasks as succeeded", listed, run.e2e.DEADLINE)
    views = {"/api/tasks": [_get(f"{run.flower}/api/tasks?limit=1000")[1]]}
    for task_id in tasks:
        for path in (f"/task/{task_id}", f"/api/task/info/{task_id}"):
            status, body = _get(run.flower + path)
            assert status == 200, path
            views[path] = [body]
    assert len(views) == 1 + 2 * len(tasks) and len(tasks) >= len(expected)
    return views


def test_the_join_commands_reach_the_submitter_from_the_run_state_only(sandbox_run: SandboxRun) -> None:
    tokens = sandbox_run.token_secrets()
    join = sandbox_run.e2e.JoinCommand.parse(sandbox_run.join_text())
    token_id, token_secret = join.token.split(".")
    assert tokens[token_id] == token_secret  # the printed token is the cluster's
    assert len(join.certificate_key) == 64
    as_json = sandbox_run.box.cli("status", sandbox_run.run_id, "--show-join-command", "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    commands = json.loads(as_json.stdout)["joinCommands"]
    assert [c["role"] for c in commands] == ["control-plane", "worker"]
    assert f"--token {join.token} " in commands[1]["command"]
    assert commands[0]["command"].endswith(f"--control-plane --certificate-key {join.certificate_key}")
    for plain in (sandbox_run.box.cli("status", sandbox_run.run_id),
                  sandbox_run.box.cli("status", sandbox_run.run_id, "-o", "json")):
        assert plain.returncode == 0, plain.stderr
        assert "kubeadm join" not in plain.stdout and token_secret not in plain.stdout
        assert join.certificate_key not in plain.stdout and "joinCommands" not in plain.stdout


def test_no_log_file_holds_a_token_secret_a_certificate_key_or_a_private_key(sandbox_run: SandboxRun) -> None:
    logs = sandbox_run.log_files()
    text = {name: values[0].decode(errors="replace") for name, values in logs.items()}
    control = next(t for n, t in text.items() if n.endswith("logs/control-worker.log"))
    node = next(t for n, t in text.items() if n.endswith(f"logs/node-worker-{NODE}.log"))
    # The search reads the files the phases wrote to: kubeadm's lines are there, redacted.
    ids = "|".join(sandbox_run.token_secrets())
    assert re.search(rf"\[bootstrap-token\] Using token: ({ids})\.<redacted>", control)
    assert re.search(rf"kubeadm join \S+ --token ({ids})\.<redacted>", control)
    assert "--control-plane --certificate-key <redacted>" in control
    assert "[upload-certs] Using certificate key:\n<redacted>" in node
    # Every process of the node writes one of these: workers, Flower, the kubelet, each static Pod.
    for source in ("logs/control-worker.log", f"logs/node-worker-{NODE}.log", "flower.log", "/kubelet.log",
                   "/etcd/", "/kube-apiserver/", "/kube-controller-manager/", "/kube-scheduler/"):
        assert any(source in name for name in text), source
    needles = sandbox_run.needles()
    # The needles are the run's real secrets: the submitter's own view of the join commands holds them.
    token_id = sandbox_run.e2e.JoinCommand.parse(sandbox_run.join_text()).token.split(".")[0]
    shown = set(_leaks({"join": [sandbox_run.join_text().encode()]}, needles))
    assert {"certificate key in join", f"secret of token {token_id} in join"} <= shown
    assert _leaks(logs, needles) == []


def test_no_redis_key_or_value_holds_a_secret_in_clear(sandbox_run: SandboxRun) -> None:
    client = sandbox_run.box.client()
    everything = _redis_values(client)
    run_key = f"kubeboot:run:{sandbox_run.run_id}"
    assert {run_key, f"{run_key}:events", f"{run_key}:secret:certificate-key", f"{run_key}:secret:join-command",
            f"{run_key}:secret:admin.conf", "_kombu.binding.control"} <= set(everything)
    assert _leaks(everything, sandbox_run.needles()) == []


def test_the_runs_secrets_expire_after_the_secret_ttl_and_super_admin_conf_is_not_among_them(
    sandbox_run: SandboxRun,
) -> None:
    client = sandbox_run.box.client()
    prefix = f"kubeboot:run:{sandbox_run.run_id}:secret"
    ttls = {k.decode(): client.pttl(k) for k in client.scan_iter(f"{prefix}*")}
    assert f"{prefix}:join-command" in ttls and f"{prefix}s" in ttls
    assert f"{prefix}:super-admin.conf" not in ttls
    assert all(0 < ms <= SECRET_TTL * 1000 for ms in ttls.values()), ttls
    assert client.pttl(f"kubeboot:run:{sandbox_run.run_id}") == -1  # the run itself stays


def test_flower_shows_no_secret_on_any_task_view(sandbox_run: SandboxRun) -> None:
    views = _flower_views(sandbox_run)
    assert any(b"kubeboot.init.upload-certs" in body for body in views["/api/tasks"])
    assert _leaks(views, sandbox_run.needles()) == []


def test_no_event_of_the_run_holds_a_secret(sandbox_run: SandboxRun) -> None:
    events = sandbox_run.box.store.events(sandbox_run.run_id)
    watched = sandbox_run.box.cli("status", sandbox_run.run_id, "--watch")
    assert watched.returncode == 0, watched.stderr
    assert "show-join-command succeeded" in watched.stdout
    assert {e.event for e in events} >= {"submitted", "started", "succeeded"}
    haystack = {"events": [json.dumps([dataclasses.asdict(e) for e in events]).encode()],
                "--watch": [watched.stdout.encode()]}
    assert _leaks(haystack, sandbox_run.needles()) == []
