"""No secret of a run is readable where the engine keeps or shows it: not in any Redis key (kubeboot's
run state and Celery's own messages), not in Flower.

Values are searched as stored and decoded: Celery keeps message bodies base64-encoded inside JSON, and
a kubeconfig embeds its PEM blocks base64-encoded, so every base64-looking string is decoded (nested)
and searched too.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
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
