"""Helpers shared by integration tests: the installed `kubeboot` console script and node configs."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

SCRIPTS = Path(sysconfig.get_path("scripts"))
V4 = "kubeadm.k8s.io/v1beta4"


def kubeboot(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    exe = SCRIPTS / "kubeboot"
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "workers.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=300)


@pytest.fixture(name="kubeboot")
def kubeboot_fixture() -> object:
    """Run the installed ``kubeboot`` console script; returns the CompletedProcess."""
    return kubeboot


@pytest.fixture
def node_config(tmp_path: Path) -> Path:
    """A one-node config on its own loopback address, ECDSA keys to keep the tests quick."""
    path = tmp_path / "kubeadm.yaml"
    docs = [
        {"apiVersion": V4, "kind": "InitConfiguration",
         "nodeRegistration": {"name": "cp1", "ignorePreflightErrors": ["all"]},
         "localAPIEndpoint": {"advertiseAddress": "127.0.30.1"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256",
         "controlPlaneEndpoint": "cp.example.test:6443"},
    ]
    path.write_text(yaml.safe_dump_all(docs))
    return path


# --- a throwaway real Redis server per test (run-state, lock and embedded-Redis tests) ---------------
@pytest.fixture
def redis_server() -> object:
    """A fresh redis-server (the bundled binary) on a unix socket in a short temp dir; yields its URL.

    A short directory of its own, not ``tmp_path``: a unix socket path must fit in ~100 bytes.
    """
    import shutil
    import tempfile
    import time

    import redis

    from workers.redis_server import find_redis_server

    workdir = Path(tempfile.mkdtemp(prefix="kb-redis-"))
    sock = workdir / "redis.sock"
    proc = subprocess.Popen(
        [str(find_redis_server()), "--port", "0", "--unixsocket", str(sock), "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    url = f"unix://{sock}"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(500):  # bounded wait for the listener, not a timing assertion
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None:
                    raise RuntimeError("redis-server exited at start") from None
                time.sleep(0.01)
        yield url
    finally:
        client.close()
        proc.kill()  # nothing to persist; a graceful shutdown would only add ~100 ms per test
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
