"""``SandboxKubelet``: the kubelet driver (tasks.kubelet.KubeletDriver) of a sandbox node.

Reads: the node's ``kubelet.pid`` and pods' ``pid``/``state.json`` files, ``/proc``, the KubeletConfiguration
(health port). Writes: appends the daemon's output to ``kubelet.log``.

Like ``systemctl`` for a real kubelet: ``start`` launches the daemon (detached, its own session) unless
it already runs and waits, bounded, until its ``/healthz`` answers; ``stop`` ends the daemon and leaves
the static Pods running (a restarted daemon adopts them); ``restart`` is both. ``stop`` leaves the mark
``kubelet.stopped`` until the next start: the sandbox's supervisor (``sandbox.supervise``) restarts a
kubelet that died, as systemd's ``Restart=always`` does, but not one stopped on purpose. ``stop_all`` is for
``kubeboot sandbox down``: the daemon and every pod process of the node, so nothing is left behind.
Like kubeadm's kubelet driver, nothing here raises for kubelet trouble: it is reported through ``out``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from kubeboot.sandbox.addresses import map_host
from kubeboot.sandbox.kubelet import process
from kubeboot.sandbox.kubelet.layout import Layout, read_settings

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
_MODULE = "kubeboot.sandbox.kubelet"


def _quiet(_line: str) -> None:
    pass


class SandboxKubelet:
    """The sandbox kubelet daemon of one node, driven like a kubelet service."""

    def __init__(self, root: str | Path, node_name: str, address: str, *, python: str = sys.executable,
                 log_level: str = "info") -> None:
        self.root = Path(root).resolve()
        self.node_name = node_name
        self.address = address
        self.layout = Layout(self.root)
        self._python = python
        self._log_level = log_level

    @property
    def healthz_url(self) -> str:
        try:
            settings = read_settings(self.root)
        except ValueError:
            return f"http://{self.address}:10248/healthz"
        return f"http://{map_host(settings.healthz_bind_address, self.address)}:{settings.healthz_port}/healthz"

    def daemon_pid(self) -> int | None:
        """The running daemon's pid (its pid file names a live ``sandbox.kubelet`` for this root)."""
        pid = process.read_pid(self.layout.pid_file)
        if pid is None or not process.alive(pid):
            return None
        cmd = process.cmdline(pid)
        if _MODULE not in cmd or str(self.root) not in cmd:
            return None  # the pid was reused by something else
        return pid

    def is_active(self) -> bool:
        return self.daemon_pid() is not None

    def stopped_on_purpose(self) -> bool:
        return self.layout.stopped_file.exists()

    def launch(self) -> subprocess.Popen[bytes] | None:
        """Start the daemon unless it runs, without waiting for it to be healthy; the process started.
        Its pid goes to ``kubelet.starting`` before the stop mark goes: a supervisor looking meanwhile
        sees a kubelet starting, never one that died."""
        proc = self._spawn() if self.daemon_pid() is None else None
        if proc is not None:
            process.write_pid(self.layout.starting_file, proc.pid)
        self.layout.stopped_file.unlink(missing_ok=True)
        return proc

    def starting_pid(self) -> int | None:
        """The daemon launched last, while it lives (it may not have written its pid file yet)."""
        pid = process.read_pid(self.layout.starting_file)
        return pid if pid is not None and process.alive(pid) else None

    def start(self, out: Callable[[str], None]) -> None:
        self.launch()
        if not self.wait_healthy(START_TIMEOUT_SECONDS):
            out(f"[kubelet-start] WARNING: the sandbox kubelet of {self.node_name} is not healthy at "
                f"{self.healthz_url} after {START_TIMEOUT_SECONDS:.0f}s; see {self.layout.log_file}")

    def stop(self, out: Callable[[str], None]) -> None:
        self.layout.sandbox_dir.mkdir(parents=True, exist_ok=True)
        self.layout.stopped_file.touch()
        pid = self.daemon_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_gone(pid, STOP_TIMEOUT_SECONDS):
            out(f"[kubelet-start] WARNING: the sandbox kubelet of {self.node_name} ignored SIGTERM; killed it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, STOP_TIMEOUT_SECONDS)

    def restart(self, out: Callable[[str], None]) -> None:
        self.stop(out)
        self.start(out)

    def stop_all(self, out: Callable[[str], None] = _quiet) -> None:
        """Stop the daemon, then every pod process it started (found by their pid and state files)."""
        self.stop(out)
        if not self.layout.pods_dir.is_dir():
            return
        for pod_dir in sorted(p for p in self.layout.pods_dir.iterdir() if p.is_dir()):
            state = process.read_json(pod_dir / "state.json") or {}
            pid = process.read_pid(pod_dir / "pid") or int(state.get("pid", 0))
            if pid:
                process.stop_group(pid, state.get("start_ticks"))
            for name in ("pid", "state.json"):
                (pod_dir / name).unlink(missing_ok=True)

    def pod_pids(self) -> dict[str, int]:
        """The pid of every pod process the node's pid files name (alive or not)."""
        pids: dict[str, int] = {}
        if self.layout.pods_dir.is_dir():
            for pod_dir in sorted(self.layout.pods_dir.iterdir()):
                pid = process.read_pid(pod_dir / "pid")
                if pid:
                    pids[pod_dir.name] = pid
        return pids

    # --- helpers ----------------------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.layout.sandbox_dir.mkdir(parents=True, exist_ok=True)
        argv = [self._python, "-m", _MODULE, "--root", str(self.root), "--node-name", self.node_name,
                "--address", self.address, "--log-level", self._log_level]
        with self.layout.log_file.open("ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=self.root, start_new_session=True, close_fds=True)
        # Reap it whenever it exits: a zombie daemon would look alive to a pid check for ever.
        threading.Thread(target=proc.wait, name=f"reap-kubelet-{self.node_name}", daemon=True).start()
        return proc

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.healthz_url, timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def wait_healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._healthy():
                return True
            time.sleep(0.1)
        return False

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.alive(pid):
                return True
            time.sleep(0.05)
        return False
