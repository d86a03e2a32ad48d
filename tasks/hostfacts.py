"""The facts about the real machine that preflight checks read, behind one small object.

Reads: the real host only — ``/proc``, ``PATH``, ``systemctl``, ``kubelet --version``, TCP ports, DNS,
the proxy environment, the CRI socket. Writes: nothing (a port probe binds and closes at once).

Node files (manifests, etcd data) are read through the node root, never here. What lives here is a
property of the machine and its kernel, shared by every simulated node on it: CPUs, memory, swap,
``/proc/sys`` settings, binaries, services, ports. Tests replace ``HostFacts`` with a fake that returns
chosen facts and injects failures.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

COMMAND_TIMEOUT_SECONDS = 30.0
CRI_CONNECT_TIMEOUT_SECONDS = 2.0
_KUBELET_VERSION_RE = re.compile(r"v?(\d+\.\d+\.\d+\S*)")


class HostFacts:
    """The real host. Every method answers one question and never raises for an ordinary "no"."""

    def euid(self) -> int:
        return os.geteuid()

    def cpu_count(self) -> int:
        # Go's runtime.NumCPU counts the CPUs this process may run on, not the machine's.
        try:
            return len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            return os.cpu_count() or 1

    def read_file(self, path: str) -> bytes | None:
        """A host file such as ``/proc/meminfo``; None when it cannot be read."""
        try:
            return Path(path).read_bytes()
        except OSError:
            return None

    def which(self, executable: str) -> str | None:
        return shutil.which(executable)

    def port_in_use(self, host: str, port: int) -> bool:
        """True when nothing can listen on ``host:port`` because something already does.

        Binds the address the component will listen on (kubeadm v1.37 does the same; earlier
        kubeadm binds every interface, which would make simulated nodes on distinct loopback
        addresses collide). An address that is not on this machine falls back to every interface.
        """
        try:
            return self._bind_fails(host, port)
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL and host:
                return self._bind_fails("", port)
            raise

    @staticmethod
    def _bind_fails(host: str, port: int) -> bool:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            # Like Go's net.Listen: a port in TIME_WAIT from a just-stopped component is free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
                s.listen(1)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return True
                raise
        return False

    def lookup_host(self, name: str) -> tuple[list[str], str]:
        """(addresses, error text) like Go's net.LookupHost."""
        try:
            infos = socket.getaddrinfo(name, None)
        except OSError as e:
            return [], str(e.strerror or e)
        return sorted({str(info[4][0]) for info in infos}), ""

    def environ(self) -> dict[str, str]:
        return dict(os.environ)

    def systemctl(self) -> str | None:
        """kubeadm's GetInitSystem: systemd when ``systemctl`` is on PATH."""
        return shutil.which("systemctl")

    def _systemctl(self, *args: str) -> subprocess.CompletedProcess[str] | None:
        exe = self.systemctl()
        if exe is None:
            return None
        try:
            return subprocess.run([exe, *args], capture_output=True, text=True, check=False,
                                  timeout=COMMAND_TIMEOUT_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            return None

    def service_exists(self, name: str) -> bool:
        done = self._systemctl("status", name)
        return done is not None and "Loaded: not-found" not in done.stdout

    def service_enabled(self, name: str) -> bool:
        done = self._systemctl("is-enabled", name)
        return done is not None and done.returncode == 0

    def service_active(self, name: str) -> bool:
        done = self._systemctl("is-active", name)
        return done is not None and done.stdout.strip() in ("active", "activating")

    def kubelet_version(self) -> tuple[str, str]:
        """(version such as ``1.36.1``, error text) from ``kubelet --version``."""
        exe = shutil.which("kubelet")
        if exe is None:
            return "", "cannot execute 'kubelet --version': executable file not found in $PATH"
        try:
            done = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False,
                                  timeout=COMMAND_TIMEOUT_SECONDS)
        except (OSError, subprocess.TimeoutExpired) as e:
            return "", f"cannot execute 'kubelet --version': {e}"
        m = _KUBELET_VERSION_RE.search(done.stdout)
        if done.returncode != 0 or not m:
            return "", f"cannot execute 'kubelet --version': exit status {done.returncode}"
        return m.group(1), ""

    def cri_error(self, endpoint: str) -> str:
        """Why the CRI endpoint does not accept connections, or "" when it does.

        kubeboot speaks no gRPC: it checks that the runtime's socket answers, which is what fails
        in practice (runtime not installed or not running).
        """
        path = endpoint.removeprefix("unix://")
        if "://" in path:
            return f"unsupported CRI endpoint scheme in {endpoint!r}: kubeboot checks unix sockets only"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(CRI_CONNECT_TIMEOUT_SECONDS)
                s.connect(path)
        except OSError as e:
            reason = (e.strerror or str(e)).lower()
            return (f'validate service connection: validate CRI v1 runtime API for endpoint "{endpoint}": '
                    f"dial unix {path}: connect: {reason}")
        return ""


def proxy_for(url_host: str, scheme: str, env: dict[str, str]) -> str:
    """The proxy Go's http.ProxyFromEnvironment would use for ``scheme://url_host``, or ""."""
    proxy = (env.get(f"{scheme.upper()}_PROXY") or env.get(f"{scheme}_proxy") or "").strip()
    if not proxy or _is_loopback(url_host):
        return ""
    no_proxy = env.get("NO_PROXY") or env.get("no_proxy") or ""
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if entry and _bypasses(entry, url_host.lower()):
            return ""
    return proxy if "://" in proxy else f"http://{proxy}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bypasses(entry: str, host: str) -> bool:
    if entry == "*":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        addr = None
    if "/" in entry and addr is not None:
        try:
            return addr in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    entry = entry.split(":", maxsplit=1)[0] if entry.count(":") == 1 else entry
    return host == entry.lstrip(".") or host.endswith("." + entry.lstrip("."))
