"""Paths as Go's ``path/filepath`` spells them, so flags and files read exactly like kubeadm's.

Reads: nothing. Writes: nothing. kubeadm builds every file path under a configured directory with
``filepath.Join`` (which cleans: ``/etc/kubernetes/pki/`` + ``ca.crt`` is ``/etc/kubernetes/pki/ca.crt``,
never ``pki//ca.crt``) and compares directories after ``filepath.Clean``/``filepath.Dir``. Python's
``posixpath.normpath`` differs from Go's Clean in one place: it keeps a leading ``//`` (POSIX leaves
its meaning to the implementation), which Go reduces to ``/``.
"""

from __future__ import annotations

import posixpath


def go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` on Linux: ``"."`` for empty, no ``//``, no ``.``, ``..`` resolved lexically."""
    cleaned = posixpath.normpath(path) if path else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def go_join(*elems: str) -> str:
    """Go's ``filepath.Join``: empty elements ignored, the result cleaned; ``""`` when all are empty."""
    parts = [e for e in elems if e]
    return go_clean("/".join(parts)) if parts else ""


def go_dir(path: str) -> str:
    """Go's ``filepath.Dir``: the cleaned directory of ``path`` (``.`` for a bare file name)."""
    return go_clean(posixpath.dirname(path))


def climbs(path: str) -> bool:
    """True when ``path`` has a ``..`` component: under a node root it could lead out of the root."""
    return ".." in path.split("/")
