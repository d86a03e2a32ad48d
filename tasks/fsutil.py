"""A node's file system seen through its root directory, with atomic, write-if-different writes.

Every node path is ``root / <absolute kubeadm path>`` (ARCHITECTURE section 2), so one machine can
host many simulated nodes. Writes go to a temporary file in the same directory and are renamed into
place: a crash never leaves a half-written file. A write whose content and mode already match does
not touch the file, so re-running a phase leaves bytes and mtimes alone.

This module also holds the project's one atomic-write helper (``atomic_write``: every file kubeboot
and its sandbox replace, node files or their own state) and its one way of handing in-memory PEM
to ``ssl`` (``load_cert_chain_pem``), which only reads certificate chains from files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from kubeboot.config.paths import go_clean
from kubeboot.tasks.errors import PermanentError

if TYPE_CHECKING:
    import ssl


def atomic_write(path: str | Path, data: bytes | str, mode: int = 0o644, *, dir_mode: int = 0o755,
                 durable: bool = True, exclusive: bool = False) -> None:
    """Replace ``path`` with ``data``: temp file in the same directory, fsync, chmod, rename.

    The temporary file is created 0600 (mkstemp), so a secret is never readable by others, not even
    for an instant; missing parent directories are created with ``dir_mode``. ``durable=False`` skips
    the fsync (still never half-written) for throw-away files: a dry run's fake API objects.
    ``exclusive=True`` creates ``path`` only if it does not exist (a hard link, which fails on an
    existing name, instead of the rename): of several processes creating it at once exactly one wins,
    and the others leave the winner's file alone (read it back to use it).
    """
    target = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    if not target.parent.is_dir():
        target.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if not exclusive:
            os.replace(tmp, target)
            return
        with contextlib.suppress(FileExistsError):
            os.link(tmp, target)
        Path(tmp).unlink()
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_cert_chain_pem(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``context.load_cert_chain`` from PEM bytes: ``ssl`` reads only files, so they live in a private
    (0700) temporary directory for the duration of the call and no key material stays on disk."""
    with tempfile.TemporaryDirectory(prefix="kubeboot-tls-") as tmp:
        cert_path, key_path = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        for path, data in ((cert_path, cert_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        context.load_cert_chain(cert_path, key_path)


class NodeFS:
    """The files of one node under ``root``. Nothing it changes lies outside the root: a node path is
    cleaned as if ``root`` were ``/`` (``..`` stops at the root, as in a chroot), and before a write,
    mkdir, chown or remove the directory's real path (symlinks resolved) must still be under the
    root, else ``PermanentError`` — a symlink in a node root must not lead kubeboot's writes (a CA
    key ...) into the host."""

    def __init__(self, root: str | Path = "/") -> None:
        self.root = Path(root)

    def path(self, node_path: str) -> Path:
        """The real path of an absolute node path (``/etc/kubernetes/admin.conf``)."""
        return self.root / go_clean("/" + node_path).lstrip("/")

    def _for_change(self, node_path: str) -> Path:
        """``path(node_path)``, once it (or, while it does not exist, its nearest existing ancestor)
        resolves inside the root."""
        target = self.path(node_path)
        root = os.path.realpath(self.root)
        if root == "/":
            return target
        existing = target
        while not existing.exists() and existing != self.root:
            existing = existing.parent
        real = os.path.realpath(existing)
        if real != root and not real.startswith(root + os.sep):
            raise PermanentError(
                f"{node_path} leads to {real} (through a symbolic link), outside the node root {self.root}: "
                "refusing to change files there"
            )
        return target

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
        """Go's os.MkdirAll: every missing directory created with ``mode``; existing ones left as they are."""
        p = self._for_change(node_path)
        missing = []
        while not p.is_dir():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            d.mkdir(mode=mode, exist_ok=True)
            os.chmod(d, mode)  # as asked, whatever the umask (kubeadm runs as root with umask 022)

    def chown(self, node_path: str, uid: int, gid: int, mode: int | None = None) -> None:
        """os.Chown, then os.Chmod when ``mode`` is given (kubeadm's UpdatePathOwnerAndPermissions)."""
        p = self._for_change(node_path)
        os.chown(p, uid, gid)
        if mode is not None:
            os.chmod(p, mode)

    def write(self, node_path: str, data: bytes | str, mode: int = 0o644, dir_mode: int = 0o755) -> bool:
        """Atomically write ``data`` with ``mode``; return False when nothing had to change."""
        raw = data.encode() if isinstance(data, str) else data
        target = self._for_change(node_path)
        try:
            st = target.stat()
            if (st.st_mode & 0o7777) == mode and target.read_bytes() == raw:
                return False
        except FileNotFoundError:
            pass
        atomic_write(target, raw, mode, dir_mode=dir_mode)
        return True

    def remove(self, node_path: str) -> bool:
        try:
            self._for_change(node_path).unlink()
        except FileNotFoundError:
            return False
        return True
