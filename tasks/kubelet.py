"""How kubeboot stops and (re)starts a node's kubelet: a small driver interface and its systemd form.

Reads: nothing on the node root; ``SystemdKubelet`` runs ``systemctl`` on the real host.
Writes: nothing; it only changes the state of the host's ``kubelet`` service.

kubeadm's ``kubelet-start`` stops the kubelet (``TryStopKubelet``) before writing its files and then
restarts it (``TryStartKubelet``: ``systemctl daemon-reload && systemctl restart kubelet``). Neither is
fatal in kubeadm: a missing init system or a failing ``systemctl`` only prints a warning and the
wait-control-plane phase reports a kubelet that never became healthy. The drivers keep that contract:
they report what happened as kubeadm's lines through ``out`` and never raise for service trouble.

The driver is chosen by the caller (``--kubelet systemd|none``); the sandbox brings its own driver.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from kubeboot.config import constants as c

KUBELET_SERVICE = "kubelet"
# systemctl talks to PID 1 over D-Bus; a wedged systemd must not hang a phase forever.
SYSTEMCTL_TIMEOUT_SECONDS = 60.0
_NOT_RUNNING = "the kubelet not running for a short period of time while setting up configuration for it."


@runtime_checkable
class KubeletDriver(Protocol):
    """What kubelet-start and wait-control-plane need from whatever runs the kubelet."""

    @property
    def healthz_url(self) -> str:
        """Where the kubelet's health endpoint answers (kubeadm: http://127.0.0.1:10248/healthz)."""
        ...

    def stop(self, out: Callable[[str], None]) -> None:
        """Stop the kubelet for the short time its files are rewritten; best effort."""
        ...

    def start(self, out: Callable[[str], None]) -> None:
        """(Re)start the kubelet so it reads the files just written; best effort."""
        ...

    def restart(self, out: Callable[[str], None]) -> None:
        """Restart a running kubelet (kubeadm's TryRestartKubelet); best effort."""
        ...

    def is_active(self) -> bool:
        """True when the kubelet is running or trying to (a crash-looping kubelet counts)."""
        ...


def kubelet_healthz_url() -> str:
    """kubeadm's kubelet health check URL: healthzBindAddress:healthzPort of the KubeletConfiguration."""
    return f"http://127.0.0.1:{c.KUBELET_HEALTHZ_PORT}/healthz"


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, check=False, timeout=SYSTEMCTL_TIMEOUT_SECONDS
    )


class SystemdKubelet:
    """The ``kubelet`` systemd unit, driven like kubeadm's initsystem.SystemdInitSystem.

    ``systemctl`` is looked up on ``PATH`` (kubeadm's GetInitSystem) unless given; ``run`` executes one
    command and exists so tests can stand in for ``systemctl`` without a systemd.
    """

    def __init__(
        self, run: Runner = _run, systemctl: str | None = None, *, which: Callable[[str], str | None] = shutil.which
    ) -> None:
        self._run = run
        self._systemctl = systemctl or which("systemctl")

    @property
    def healthz_url(self) -> str:
        return kubelet_healthz_url()

    def _systemctl_cmd(self, *args: str) -> tuple[bool, str]:
        assert self._systemctl is not None
        try:
            done = self._run([self._systemctl, *args])
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, str(e)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout or "").strip()
            return False, f"exit status {done.returncode}" + (f": {detail}" if detail else "")
        return True, ""

    def _service_exists(self) -> bool:
        # kubeadm: `systemctl status kubelet` output does not say "Loaded: not-found".
        try:
            done = self._run([str(self._systemctl), "status", KUBELET_SERVICE])
        except (OSError, subprocess.TimeoutExpired):
            return False
        return "Loaded: not-found" not in (done.stdout or "")

    def stop(self, out: Callable[[str], None]) -> None:
        if self._systemctl is None:
            out(f"[kubelet-start] No supported init system detected, won't make sure {_NOT_RUNNING}")
            return
        if not self._service_exists():
            out(f"[kubelet-start] Couldn't detect a kubelet service, can't make sure {_NOT_RUNNING}")
        ok, err = self._systemctl_cmd("stop", KUBELET_SERVICE)
        if not ok:
            out(f"[kubelet-start] WARNING: unable to stop the kubelet service momentarily: [{err}]")

    def start(self, out: Callable[[str], None]) -> None:
        if self._systemctl is None:
            out("[kubelet-start] No supported init system detected, won't make sure the kubelet is running properly.")
            out("[kubelet-start] Please ensure kubelet is reloaded and running manually.")
            return
        if not self._service_exists():
            out("[kubelet-start] Couldn't detect a kubelet service, can't make sure the kubelet is running properly.")
        # Beyond kubeadm (which only warns in preflight "Service-Kubelet"): enable the unit so the
        # kubelet, and with it the static Pods, come back after a reboot. Best effort, silent.
        self._systemctl_cmd("enable", KUBELET_SERVICE)
        ok, err = self._restart()
        if not ok:
            out(f"[kubelet-start] WARNING: unable to start the kubelet service: [{err}]")
            out("[kubelet-start] Please ensure kubelet is reloaded and running manually.")

    def restart(self, out: Callable[[str], None]) -> None:
        if self._systemctl is None:
            out("[kubelet-start] No supported init system detected, won't make sure the kubelet is running properly.")
            return
        ok, err = self._restart()
        if not ok:
            out(f"[kubelet-start] WARNING: unable to restart the kubelet service momentarily: [{err}]")

    def _restart(self) -> tuple[bool, str]:
        # kubeadm's ServiceRestart: make systemd re-read unit files (10-kubeadm.conf) first.
        ok, err = self._systemctl_cmd("daemon-reload")
        if not ok:
            return False, f"failed to reload systemd: {err}"
        return self._systemctl_cmd("restart", KUBELET_SERVICE)

    def is_active(self) -> bool:
        if self._systemctl is None:
            return False
        try:
            done = self._run([self._systemctl, "is-active", KUBELET_SERVICE])
        except (OSError, subprocess.TimeoutExpired):
            return False
        # kubeadm's ServiceIsActive: "activating" covers a kubelet that crash-loops until it is configured.
        return (done.stdout or "").strip() in ("active", "activating")


# --- choosing a driver by name (``--kubelet``) ------------------------------------------------------


@dataclass(frozen=True)
class NodeInfo:
    """What a driver factory may know about the node it drives."""

    root: Path
    node_name: str
    address: str = ""  # the node's own address when it is not the host's (sandbox nodes)


DriverFactory = Callable[[NodeInfo], KubeletDriver]
_FACTORIES: dict[str, DriverFactory] = {"systemd": lambda _info: SystemdKubelet()}


def register_driver(name: str, factory: DriverFactory) -> None:
    """Make ``--kubelet <name>`` available; the entry point that owns a driver registers it."""
    _FACTORIES[name] = factory


def make_driver(name: str, info: NodeInfo) -> KubeletDriver | None:
    """The driver called ``name`` for the node ``info``; None for ``none`` (files only)."""
    if name == "none":
        return None
    if name not in _FACTORIES:
        raise ValueError(f"unknown kubelet driver {name!r}; known: none, {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name](info)
