"""Memory of a process tree from /proc, for the benchmarks.

  RSS  /proc/<pid>/status VmRSS: resident pages of each process, pages shared with others counted in
       each of them (a prefork worker's children share most of their parent's pages)
  PSS  /proc/<pid>/smaps_rollup Pss: each shared page divided among the processes sharing it, so the
       sum over a tree is what the tree really costs the machine

A worker is a main process and its pool children: ``tree(pid)`` lists them all (every thread's
children, recursively), and the sums are over that list.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (of any of its threads)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(p) for p in (task / "children").read_text().split()]
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children(p)
    return pids


def _field_kib(path: str, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    return 0  # the process ended while we looked


def rss_kib(pids: Sequence[int]) -> int:
    return sum(_field_kib(f"/proc/{pid}/status", "VmRSS:") for pid in pids)


def pss_kib(pids: Sequence[int]) -> int:
    """Proportional set size: pages shared between processes (a pool's forked children) counted once."""
    return sum(_field_kib(f"/proc/{pid}/smaps_rollup", "Pss:") for pid in pids)
