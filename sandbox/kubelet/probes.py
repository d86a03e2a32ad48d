"""The kubelet's container probes (startup, liveness, readiness) against a pod process of a sandbox node.

Reads: the container's probes; the network (HTTP(S) GET or a TCP connect to the node's address).
Writes: nothing; results go to the ``ProbeState`` the supervisor reads.

Semantics of the kubelet's prober (pkg/kubelet/prober): every probe waits ``initialDelaySeconds`` from
the container start, then runs every ``periodSeconds`` with ``timeoutSeconds``; liveness and readiness
wait until the startup probe has succeeded; ``failureThreshold`` consecutive failures of the startup or
liveness probe get the container killed and restarted; readiness needs ``successThreshold`` successes
and ``failureThreshold`` failures to flip. HTTP succeeds for 200-399; HTTPS is not verified (the kubelet
does not verify probe certificates). The host defaults to the pod's IP: a hostNetwork Pod's IP is the
node's address; a loopback host is the node's address too.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubeboot.sandbox.addresses import map_host

_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1,
             "successThreshold": 1, "failureThreshold": 3}
_NO_VERIFY = ssl.create_default_context()
_NO_VERIFY.check_hostname = False
_NO_VERIFY.verify_mode = ssl.CERT_NONE


@dataclass
class ProbeState:
    """What the prober found out; read by the supervisor (plain assignments: safe across threads)."""

    started: bool = False
    ready: bool = False
    kill_reason: str = ""  # set once a startup or liveness probe has failed failureThreshold times


def _setting(probe: dict[str, Any], key: str) -> float:
    value = probe.get(key)
    return float(value if value is not None else _DEFAULTS[key])


def resolve_port(port: Any, container: dict[str, Any]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"probe port {port!r} names no container port")


def probe_url(probe: dict[str, Any], container: dict[str, Any], address: str,
              map_path: Callable[[str], str] = lambda p: p) -> str:
    """The URL an httpGet probe asks, as the kubelet builds it, with loopback mapped to ``address``."""
    get = probe["httpGet"]
    host = map_host(str(get.get("host") or address), address)
    scheme = str(get.get("scheme") or "HTTP").lower()
    path = map_path(str(get.get("path") or "/"))
    if not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{host}:{resolve_port(get.get('port'), container)}{path}"


def check(probe: dict[str, Any], container: dict[str, Any], address: str,
          map_path: Callable[[str], str] = lambda p: p) -> tuple[bool, str]:
    """Run one probe: (success, what happened)."""
    timeout = _setting(probe, "timeoutSeconds")
    try:
        if "httpGet" in probe:
            url = probe_url(probe, container, address, map_path)
            with urllib.request.urlopen(url, timeout=timeout, context=_NO_VERIFY) as resp:
                return 200 <= resp.status < 400, f"{url}: HTTP {resp.status}"
        if "tcpSocket" in probe:
            host = map_host(str(probe["tcpSocket"].get("host") or address), address)
            port = resolve_port(probe["tcpSocket"].get("port"), container)
            with socket.create_connection((host, port), timeout=timeout):
                return True, f"tcp {host}:{port}: connected"
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code}"
    except (OSError, ValueError) as e:
        return False, str(e)
    return True, "probe type not run by the sandbox (exec/grpc): counted as success"


class Prober(threading.Thread):
    """Runs a container's probes until ``stop``; one per running container."""

    def __init__(self, container: dict[str, Any], address: str, started_at: float, state: ProbeState,
                 *, map_path: Callable[[str], str] = lambda p: p, name: str = "prober") -> None:
        super().__init__(name=name, daemon=True)
        self.container = container
        self.address = address
        self.started_at = started_at  # time.monotonic() of the container start
        self.state = state
        self.map_path = map_path
        self._stop_event = threading.Event()
        self.last_result = ""

    def stop(self) -> None:
        self._stop_event.set()

    def _wait_until(self, when: float) -> bool:
        """Sleep until ``when`` (monotonic); False when stopped meanwhile."""
        return not self._stop_event.wait(max(0.0, when - time.monotonic()))

    def _run_probe(self, probe: dict[str, Any]) -> bool:
        ok, self.last_result = check(probe, self.container, self.address, self.map_path)
        return ok

    def run(self) -> None:
        startup = self.container.get("startupProbe")
        if startup and not self._startup(startup):
            return
        self.state.started = True
        self._steady(self.container.get("livenessProbe"), self.container.get("readinessProbe"))

    def _startup(self, probe: dict[str, Any]) -> bool:
        when = self.started_at + _setting(probe, "initialDelaySeconds")
        failures = 0
        while self._wait_until(when):
            if self._run_probe(probe):
                return True
            failures += 1
            if failures >= _setting(probe, "failureThreshold"):
                self.state.kill_reason = f"startup probe failed {failures} times: {self.last_result}"
                return False
            when += _setting(probe, "periodSeconds")
        return False

    def _steady(self, liveness: dict[str, Any] | None, readiness: dict[str, Any] | None) -> None:
        if not readiness:
            self.state.ready = True
        due: dict[str, float] = {}
        counts = {"live_fail": 0, "ready_ok": 0, "ready_fail": 0}
        now = time.monotonic()
        for key, probe in (("liveness", liveness), ("readiness", readiness)):
            if probe:
                due[key] = max(now, self.started_at + _setting(probe, "initialDelaySeconds"))
        while due and self._wait_until(min(due.values())):
            key = min(due, key=lambda k: due[k])
            probe = liveness if key == "liveness" else readiness
            assert probe is not None
            ok = self._run_probe(probe)
            due[key] = time.monotonic() + _setting(probe, "periodSeconds")
            if key == "liveness":
                counts["live_fail"] = 0 if ok else counts["live_fail"] + 1
                if counts["live_fail"] >= _setting(probe, "failureThreshold"):
                    self.state.kill_reason = f"liveness probe failed {counts['live_fail']} times: {self.last_result}"
                    return
            else:
                counts["ready_ok"], counts["ready_fail"] = (counts["ready_ok"] + 1, 0) if ok else (
                    0, counts["ready_fail"] + 1)
                if counts["ready_ok"] >= _setting(probe, "successThreshold"):
                    self.state.ready = True
                elif counts["ready_fail"] >= _setting(probe, "failureThreshold"):
                    self.state.ready = False
