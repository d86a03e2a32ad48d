"""Processes of a sandbox node: liveness from /proc, pid files, and stopping a whole process group.

Reads: ``/proc/<pid>/stat`` and ``/proc/<pid>/cmdline``. Writes: the pid and state files it is given.

A pid alone can be reused by an unrelated process once the original exits; every pid kubeboot records
comes with the process's start time (field 22 of /proc/<pid>/stat, in clock ticks since boot), and a
pid only counts as "ours" while both match. A zombie counts as dead: it runs nothing any more.
Every pod process leads its own process group (``start_new_session``), so stopping a pod signals the
group and takes whatever the container started with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from kubeboot.tasks.fsutil import atomic_write

STOP_GRACE_SECONDS = 5.0  # SIGTERM, then SIGKILL (the kubelet's grace period is longer: 30 s)
_POLL = 0.05


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its last ")".
    return raw[raw.rfind(")") + 2:].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None when it is gone or a zombie."""
    fields = _stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)


def alive(pid: int, started: int | None = None) -> bool:
    """True while ``pid`` runs (and is the process that started at ``started``, when given)."""
    if pid <= 0:
        return False
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


def group_alive(pgid: int) -> bool:
    """True while some non-zombie process is in process group ``pgid``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_group(pid: int, started: int | None, *, popen: subprocess.Popen[bytes] | None = None,
               grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``grace`` seconds; reap our child.

    Nothing is signalled when ``pid`` is no longer the process that started at ``started``: its
    group id may belong to someone else by now.
    """
    if popen is None and not alive(pid, started):
        return
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if popen is not None:
            popen.poll()
        if not group_alive(pid):
            break
        time.sleep(_POLL)
    else:
        _signal_group(pid, signal.SIGKILL)
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=grace)
    deadline = time.monotonic() + grace
    while group_alive(pid) and time.monotonic() < deadline:  # SIGKILL is not instant
        time.sleep(_POLL)


# --- pid and state files -----------------------------------------------------------------------------


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``data`` as JSON (readers never see half a file)."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_pid(path: Path, pid: int) -> None:
    atomic_write(path, f"{pid}\n")


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
