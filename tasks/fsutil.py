"""A node's file system seen through its root directory, with atomic, write-if-different writes.

Every node path is ``root / <absolute kubeadm path>`` (ARCHITECTURE section 2), so one machine can
host many simulated nodes. Writes go to a temporary file in the same directory and are renamed into
place: a crash never leaves a half-written file. A write whose content and mode already match does
not touch the file, so re-running a phase leaves bytes and mtimes alone.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class NodeFS:
    def __init__(self, root: str | Path = "/") -> None:
        self.root = Path(root)

    def path(self, node_path: str) -> Path:
        """The real path of an absolute node path (``/etc/kubernetes/admin.conf``)."""
        return self.root / node_path.lstrip("/")

    def exists(self, node_path: str) -> bool:
        return self.path(node_path).exists()

    def read_bytes(self, node_path: str) -> bytes | None:
        try:
            return self.path(node_path).read_bytes()
        except FileNotFoundError:
            return None

    def read_text(self, node_path: str) -> str | None:
        data = self.read_bytes(node_path)
        return None if data is None else data.decode()

    def mkdir(self, node_path: str, mode: int = 0o755) -> None:
        p = self.path(node_path)
        if not p.is_dir():
            p.mkdir(mode=mode, parents=True, exist_ok=True)

    def write(self, node_path: str, data: bytes | str, mode: int = 0o644, dir_mode: int = 0o755) -> bool:
        """Atomically write ``data`` with ``mode``; return False when nothing had to change."""
        raw = data.encode() if isinstance(data, str) else data
        target = self.path(node_path)
        try:
            st = target.stat()
            if (st.st_mode & 0o7777) == mode and target.read_bytes() == raw:
                return False
        except FileNotFoundError:
            pass
        if not target.parent.is_dir():
            target.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def remove(self, node_path: str) -> bool:
        try:
            self.path(node_path).unlink()
        except FileNotFoundError:
            return False
        return True
