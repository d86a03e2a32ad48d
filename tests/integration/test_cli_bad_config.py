"""A bad config file stops the CLI with exit 2, one line on stderr, and nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

NODE = """\
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  name: cp-1
localAPIEndpoint:
  advertiseAddress: 10.0.0.10
"""
CLUSTER = "---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"

BAD = [
    ("bad YAML", "kind: InitConfiguration\nnodeRegistration: [\n", "invalid YAML"),
    ("unknown field", NODE + "nodeRegistraton: {}\n", "InitConfiguration: nodeRegistraton: unknown field"),
    ("service subnet too small", NODE + CLUSTER + "networking:\n  serviceSubnet: 10.96.0.0/29\n",
     "ClusterConfiguration: networking.serviceSubnet: subnet 10.96.0.0/29 with 8 address(es) is too small"),
    ("unsupported kubernetesVersion", NODE + CLUSTER + "kubernetesVersion: v1.30.0\n",
     "ClusterConfiguration: kubernetesVersion: kubernetesVersion v1.30.0 is not supported"),
    ("unknown skipPhases name", NODE + "skipPhases: [certs/everything]\n",
     "InitConfiguration: skipPhases[0]: unknown phase 'certs/everything'"),
    ("external etcd half-configured",
     NODE + CLUSTER + "etcd:\n  external:\n    endpoints: [https://10.0.0.50:2379]\n    certFile: /c.crt\n",
     "ClusterConfiguration: etcd.external: either both or none"),
]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubeboot.workers.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(params=BAD, ids=[b[0] for b in BAD])
def bad_config(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    _, text, expected = request.param
    path = tmp_path / "kubeadm.yaml"
    path.write_text(text)
    return path, expected


def test_config_validate_exits_2_with_one_line_naming_the_problem(bad_config: tuple[Path, str]) -> None:
    path, expected = bad_config
    result = cli("config", "validate", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert expected in lines[0]


def test_init_phase_all_exits_2_and_writes_nothing(bad_config: tuple[Path, str], tmp_path: Path) -> None:
    path, expected = bad_config
    root = tmp_path / "node"
    root.mkdir()
    result = cli("init", "phase", "all", "--config", str(path), "--root", str(root))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert list(root.rglob("*")) == []


def test_config_validate_prints_ok_for_the_printed_defaults(tmp_path: Path) -> None:
    printed = cli("config", "print", "init-defaults", "--component-configs", "KubeletConfiguration")
    assert printed.returncode == 0, printed.stderr
    path = tmp_path / "defaults.yaml"
    path.write_text(printed.stdout)
    result = cli("config", "validate", str(path))
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
