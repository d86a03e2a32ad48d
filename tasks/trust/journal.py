"""A node's own record of the newest dispatch it ran, per cluster, kept on the node (not in Redis).

``<state dir>/dispatch/<worker id>.json`` (the node worker's machine; never the node root, whose files are
kubeadm's)::

    {"clusters": {"demo": {"iat": 1764600000.123, "run": "r-1a2b3c4d"}}}

Every chain is signed at one moment (its tokens' ``iat``, Redis's clock); a resume or a recovery re-send
signs a new one. A node worker refuses a task whose token is older than the newest one it already ran
for the same cluster: an old run's task sent again (a replay, after its status, phase records and
cluster lock were reset in Redis) cannot roll the node back to an older configuration, and Redis holds
nothing that could make it. Tasks of one chain share their ``iat``, so redeliveries and retries pass.
Written (fsync'd, before the task runs) only when a newer dispatch arrives: once per chain.

Every task reads it, so a process keeps what it read while one ``stat`` shows the same file (device,
inode, size, mtime, ctime: a write is a rename, a new inode). Git's "racy" rule closes the one gap: a
file whose mtime is within ``RACY_NS`` of the read may be replaced within the same timestamp tick
without its stamp changing, so such a read is not kept; any later write has a later mtime.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Final

from kubeboot.config import constants as c
from kubeboot.tasks.fsutil import atomic_write
from kubeboot.tasks.trust.tokens import Refused, TaskToken

# File timestamps come from the kernel's coarse clock (one tick: 1-10 ms); a generous margin over that.
RACY_NS: Final = 50_000_000


class Journal:
    def __init__(self, state_dir: Path, worker: str) -> None:
        self.path = state_dir / c.DISPATCH_JOURNAL.format(worker=worker)
        self._stamp: tuple[int, ...] | None = None
        self._kept: dict[str, Any] | None = None

    def _read(self) -> dict[str, Any]:
        """The journal as on disk (never modified by callers: ``admit`` copies before it changes it)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {"clusters": {}}
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if stamp == self._stamp and self._kept is not None:
            return self._kept
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {"clusters": {}}
        if not isinstance(data, dict) or not isinstance(data.get("clusters"), dict):
            data = {"clusters": {}}
        # Read after the stat: what is kept is never older than the file the stamp names.
        racy = time.time_ns() - st.st_mtime_ns < RACY_NS
        self._stamp, self._kept = (None, None) if racy else (stamp, data)
        return data

    def admit(self, token: TaskToken) -> None:
        """``Refused`` if a newer dispatch of the token's cluster already ran here; else record it."""
        data = self._read()
        newest = data["clusters"].get(token.cluster) or {}
        seen = float(newest.get("iat") or 0)
        if token.iat < seen:
            raise Refused(f"older than the newest dispatch this node ran for cluster {token.cluster} (run "
                          f"{newest.get('run')}, signed {seen - token.iat:.0f}s later): an old task sent again")
        if token.iat > seen:
            clusters = {**data["clusters"], token.cluster: {"iat": token.iat, "run": token.run}}
            atomic_write(self.path, json.dumps({**data, "clusters": clusters}, indent=1, sort_keys=True), 0o600,
                         dir_mode=0o700)
