"""The project's one atomic-write helper and its one in-memory PEM loader for ssl (tasks.fsutil)."""

from __future__ import annotations

import os
import ssl
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeboot.tasks import pki
from kubeboot.tasks.fsutil import NodeFS, atomic_write, load_cert_chain_pem


def test_atomic_write_creates_parents_and_sets_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "secret"
    atomic_write(target, b"key", 0o600, dir_mode=0o700)
    assert target.read_bytes() == b"key"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write(target, "one")
    atomic_write(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write(target, "old")
    with pytest.raises(TypeError):
        atomic_write(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_node_fs_write_uses_the_helper_and_skips_identical_content(tmp_path: Path) -> None:
    fs = NodeFS(tmp_path)
    assert fs.write("/etc/kubernetes/x.conf", "a", mode=0o600) is True
    assert fs.write("/etc/kubernetes/x.conf", "a", mode=0o600) is False
    assert fs.write("/etc/kubernetes/x.conf", "a", mode=0o644) is True  # the mode alone changed
    assert stat.S_IMODE(fs.path("/etc/kubernetes/x.conf").stat().st_mode) == 0o644


def test_load_cert_chain_pem_loads_a_matching_pair_and_leaves_nothing_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # pick TMPDIR up
    key = pki.generate_key("ECDSA-P256")
    cert = pki.build_certificate(pki.CertSpec("leaf", is_ca=True), key.public_key(), key, None, datetime.now(UTC))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    load_cert_chain_pem(ctx, pki.cert_to_pem(cert), pki.key_to_pem(key))
    assert os.listdir(tmp_path) == []
    other = pki.generate_key("ECDSA-P256")
    with pytest.raises(ssl.SSLError):
        load_cert_chain_pem(ctx, pki.cert_to_pem(cert), pki.key_to_pem(other))
    assert os.listdir(tmp_path) == []
