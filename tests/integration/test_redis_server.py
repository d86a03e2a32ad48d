"""The embedded Redis: started once, reused, persistent across restarts, private, and stoppable."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kubeboot.config.settings import Settings
from kubeboot.workers.redis_server import EmbeddedRedis, EmbeddedRedisError, redis_url

ENSURE = "import sys; from pathlib import Path; from kubeboot.workers.redis_server import EmbeddedRedis; " \
         "print(EmbeddedRedis(Path(sys.argv[1])).ensure())"


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A short path of its own (unix socket paths must stay under ~100 bytes); stops what it started."""
    path = Path(tempfile.mkdtemp(prefix="kb-state-"))
    yield path
    EmbeddedRedis(path).stop()
    shutil.rmtree(path, ignore_errors=True)


def server_pid(url: str) -> int:
    return int(redis.Redis.from_url(url).info("server")["process_id"])


def servers_using(sock: Path) -> list[int]:
    """Live redis-server processes serving this socket (from /proc, not from the pidfile).

    redis-server rewrites its process title to ``<binary> unixsocket:<path>``.
    """
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if b"redis-server" in cmdline and f"unixsocket:{sock}".encode() in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def test_ensure_starts_a_private_persistent_server_on_a_unix_socket_only(state_dir: Path) -> None:
    url = EmbeddedRedis(state_dir).ensure()
    sock = state_dir / "redis" / "redis.sock"
    assert url == f"unix://{sock}"
    client = redis.Redis.from_url(url, decode_responses=True)
    config = {k: client.config_get(k)[k] for k in ("port", "appendonly", "appendfsync", "dir", "unixsocketperm")}
    assert config == {
        "port": "0", "appendonly": "yes", "appendfsync": "everysec",
        "dir": str(state_dir / "redis"), "unixsocketperm": "700",
    }
    assert stat.S_IMODE(sock.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "redis").stat().st_mode) == 0o700


def test_a_second_ensure_reuses_the_running_server(state_dir: Path) -> None:
    first = EmbeddedRedis(state_dir).ensure()
    pid = server_pid(first)
    second = EmbeddedRedis(state_dir)
    assert second.ensure() == first
    assert second.pid() == pid == server_pid(first)


def test_the_server_outlives_the_process_that_started_it(state_dir: Path) -> None:
    url = subprocess.run([sys.executable, "-c", ENSURE, str(state_dir)], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert redis.Redis.from_url(url).ping()
    assert os.getsid(server_pid(url)) != os.getsid(0)  # its own session: a Ctrl-C here does not reach it


def test_data_survives_a_stop_and_a_restart(state_dir: Path) -> None:
    server = EmbeddedRedis(state_dir)
    redis.Redis.from_url(server.ensure()).set("kubeboot:probe", "kept")
    old_pid = server.pid()
    assert server.stop()
    url = EmbeddedRedis(state_dir).ensure()
    assert server_pid(url) != old_pid
    assert redis.Redis.from_url(url).get("kubeboot:probe") == b"kept"


def test_stop_leaves_no_process_pidfile_or_socket(state_dir: Path) -> None:
    server = EmbeddedRedis(state_dir)
    server.ensure()
    assert server.stop()
    assert servers_using(server.socket) == []
    assert not server.pidfile.exists()
    assert not server.socket.exists()
    assert not server.stop()  # stopping a stopped server is a no-op


def test_concurrent_ensures_from_several_processes_start_one_server(state_dir: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", ENSURE, str(state_dir)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    urls = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(urls) == 1
    assert servers_using(EmbeddedRedis(state_dir).socket) == [server_pid(urls.pop())]


def test_a_killed_server_is_replaced_on_the_next_ensure(state_dir: Path) -> None:
    server = EmbeddedRedis(state_dir)
    server.ensure()
    old_pid = server.pid()
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)  # leaves its pidfile and socket behind
    server._wait_gone(old_pid, 30)
    url = EmbeddedRedis(state_dir).ensure()
    assert server_pid(url) != old_pid
    assert servers_using(server.socket) == [server_pid(url)]


def test_a_state_dir_too_long_for_a_socket_falls_back_to_loopback_tcp_with_a_password(state_dir: Path) -> None:
    long_dir = state_dir / ("x" * 100)
    server = EmbeddedRedis(long_dir)
    try:
        url = server.ensure()
        assert url.startswith("redis://:") and "@127.0.0.1:" in url
        client = redis.Redis.from_url(url, decode_responses=True)
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("port")["port"] == str(server.url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(server.display_url).ping()
        assert "@" not in server.display_url
        assert stat.S_IMODE(server.tcp_file.stat().st_mode) == 0o600
        assert EmbeddedRedis(long_dir).ensure() == url  # port and password are kept
    finally:
        server.stop()


def test_a_server_that_exits_at_start_is_reported_with_its_log(state_dir: Path) -> None:
    failing = state_dir / "fake-redis-server"
    failing.write_text("#!/bin/sh\necho 'FATAL: cannot start' >&2\nexit 3\n")
    failing.chmod(0o755)
    with pytest.raises(EmbeddedRedisError, match=r"exited with code 3: FATAL: cannot start"):
        EmbeddedRedis(state_dir, binary=failing).ensure()


def test_a_configured_redis_url_is_used_and_nothing_is_started(state_dir: Path) -> None:
    settings = Settings(redis_url="redis://redis.example:6379/0", state_dir=state_dir)
    assert redis_url(settings) == "redis://redis.example:6379/0"
    assert not (state_dir / "redis").exists()


def test_without_a_redis_url_the_embedded_server_is_used(state_dir: Path) -> None:
    url = redis_url(Settings(state_dir=state_dir))
    assert url == f"unix://{state_dir}/redis/redis.sock"
    assert redis.Redis.from_url(url).ping()
