"""Paths and names that cannot escape (the engine-hardening rule, one fix with the conformance item): a
configured directory with '..' is refused before anything is written, a symbolic link in a node root never
leads a write out of it, node names are DNS-1123 subdomains, the etcd data directory is created 0700."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.workers.local_run import run_init_phase

CONFIG = """\
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration: {{name: cp1}}
localAPIEndpoint: {{advertiseAddress: 10.0.0.10}}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
encryptionAlgorithm: ECDSA-P256
{extra}
"""


def run(tmp_path: Path, extra: str = "", phase: str = "local", node: str | None = None) -> tuple[int, str, Path]:
    config = tmp_path / "kubeadm.yaml"
    config.write_text(CONFIG.format(extra=extra))
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    code, message = run_init_phase(path=phase, config_file=str(config), root=str(root), node=node,
                                   skip=["preflight"], out=lambda _line: None)
    return code, message, root


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize(("extra", "field"), [
    ("certificatesDir: /etc/kubernetes/../../../outside/pki", "ClusterConfiguration: certificatesDir"),
    ("etcd:\n  local:\n    dataDir: /var/lib/etcd/../../../../outside", "ClusterConfiguration: etcd.local.dataDir"),
], ids=["certificatesDir", "etcd.local.dataDir"])
def test_a_directory_climbing_out_of_the_root_is_refused_with_exit_2_and_nothing_written(
    tmp_path: Path, extra: str, field: str
) -> None:
    code, message, root = run(tmp_path, extra)
    assert code == 2
    assert f"{field}: " in message and "must not contain '..'" in message
    assert tree(root) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kubeadm.yaml", "root"]


def test_a_symbolic_link_out_of_the_root_stops_the_phase_before_any_key_is_written(tmp_path: Path) -> None:
    outside = tmp_path / "host-pki"
    outside.mkdir()
    (tmp_path / "root" / "etc" / "kubernetes").mkdir(parents=True)
    (tmp_path / "root" / "etc" / "kubernetes" / "pki").symlink_to(outside)
    code, message, _root = run(tmp_path, phase="certs")
    assert code == 1
    assert "outside the node root" in message and "/etc/kubernetes/pki/ca.key" in message
    assert list(outside.iterdir()) == []


def test_node_paths_are_cleaned_as_in_a_chroot(tmp_path: Path) -> None:
    fs = NodeFS(tmp_path)
    assert fs.path("/etc/kubernetes/../../../../x") == tmp_path / "x"
    assert fs.path("//etc//kubernetes/pki/") == tmp_path / "etc/kubernetes/pki"


def test_a_symlinked_file_pointing_out_of_the_root_is_not_chowned_or_replaced(tmp_path: Path) -> None:
    outside = tmp_path / "host.key"
    outside.write_text("host")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "key").symlink_to(outside)
    fs = NodeFS(root)
    with pytest.raises(PermanentError, match="outside the node root"):
        fs.chown("/etc/key", 0, 0, 0o600)
    with pytest.raises(PermanentError, match="outside the node root"):
        fs.write("/etc/key", "mine")
    assert outside.read_text() == "host"


def test_a_symlink_inside_the_root_is_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    (root / "var").mkdir()
    (root / "var" / "lib").symlink_to(root / "data")
    NodeFS(root).write("/var/lib/kubelet/config.yaml", "x")
    assert (root / "data" / "kubelet" / "config.yaml").read_text() == "x"


def test_an_invalid_node_name_from_the_command_line_is_exit_2_with_kubeadms_message(tmp_path: Path) -> None:
    code, message, root = run(tmp_path, node="Node_1")
    assert code == 2
    assert 'Invalid value: "Node_1": a lowercase RFC 1123 subdomain' in message
    assert tree(root) == []


def test_the_etcd_data_directory_is_created_0700_with_its_missing_parents(tmp_path: Path) -> None:
    code, message, root = run(tmp_path, "etcd:\n  local:\n    dataDir: /data/etcd/member0", phase="etcd")
    assert (code, message) == (0, "")
    for d in ("data", "data/etcd", "data/etcd/member0"):
        assert stat.S_IMODE((root / d).stat().st_mode) == 0o700, d


def test_an_existing_etcd_data_directory_keeps_its_mode(tmp_path: Path) -> None:
    existing = tmp_path / "root" / "var" / "lib" / "etcd"
    existing.mkdir(parents=True)
    os.chmod(existing, 0o750)
    assert run(tmp_path, phase="etcd")[:2] == (0, "")
    assert stat.S_IMODE(existing.stat().st_mode) == 0o750
