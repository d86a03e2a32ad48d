"""Helpers shared by integration tests: the installed `kubeboot` console script and node configs."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

SCRIPTS = Path(sysconfig.get_path("scripts"))
V4 = "kubeadm.k8s.io/v1beta4"


def kubeboot(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    exe = SCRIPTS / "kubeboot"
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "workers.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=300)


@pytest.fixture(name="kubeboot")
def kubeboot_fixture() -> object:
    """Run the installed ``kubeboot`` console script; returns the CompletedProcess."""
    return kubeboot


@pytest.fixture
def node_config(tmp_path: Path) -> Path:
    """A one-node config on its own loopback address, ECDSA keys to keep the tests quick."""
    path = tmp_path / "kubeadm.yaml"
    docs = [
        {"apiVersion": V4, "kind": "InitConfiguration",
         "nodeRegistration": {"name": "cp1", "ignorePreflightErrors": ["all"]},
         "localAPIEndpoint": {"advertiseAddress": "127.0.30.1"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256",
         "controlPlaneEndpoint": "cp.example.test:6443"},
    ]
    path.write_text(yaml.safe_dump_all(docs))
    return path
