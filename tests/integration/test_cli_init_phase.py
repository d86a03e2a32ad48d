"""`kubeboot init phase` through the installed console script, as a kubeadm user would run it."""

from __future__ import annotations

from pathlib import Path

INVENTORY = sorted(
    [f"etc/kubernetes/pki/{n}.{e}" for n in ["ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca",
                                              "front-proxy-client", "apiserver-etcd-client"] for e in ("crt", "key")]
    + [f"etc/kubernetes/pki/etcd/{n}.{e}" for n in ["ca", "server", "peer", "healthcheck-client"]
       for e in ("crt", "key")]
    + ["etc/kubernetes/pki/sa.key", "etc/kubernetes/pki/sa.pub"]
    + [f"etc/kubernetes/{n}.conf" for n in ["admin", "super-admin", "kubelet", "controller-manager", "scheduler"]]
    + [f"etc/kubernetes/manifests/{n}.yaml" for n in ["etcd", "kube-apiserver", "kube-controller-manager",
                                                     "kube-scheduler"]]
    + ["var/lib/kubelet/config.yaml", "var/lib/kubelet/instance-config.yaml", "var/lib/kubelet/kubeadm-flags.env"]
)


def files(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in root.rglob("*") if p.is_file()}


def test_init_phase_local_writes_the_control_plane_inventory_of_kubeadm(
    tmp_path: Path, node_config: Path, kubeboot
) -> None:
    root = tmp_path / "node"
    result = kubeboot("init", "phase", "local", "--config", str(node_config), "--root", str(root))
    assert result.returncode == 0, result.stderr
    kubeboot_files = [f for f in files(root) if not f.startswith("var/lib/kubeboot/")]
    assert sorted(kubeboot_files) == INVENTORY
    assert '[certs] Generating "apiserver" certificate and key' in result.stdout
    assert '[kubeconfig] Writing "admin.conf" kubeconfig file' in result.stdout
    assert '[control-plane] Creating static Pod manifest for "kube-apiserver"' in result.stdout


def test_running_init_phase_local_twice_changes_no_byte_and_no_mtime(
    tmp_path: Path, node_config: Path, kubeboot
) -> None:
    root = tmp_path / "node"
    assert kubeboot("init", "phase", "local", "--config", str(node_config), "--root", str(root)).returncode == 0
    before = files(root)
    second = kubeboot("init", "phase", "local", "--config", str(node_config), "--root", str(root))
    assert second.returncode == 0, second.stderr
    assert files(root) == before
    assert "Using existing" in second.stdout
    assert "Generating" not in second.stdout


def test_a_sub_phase_path_runs_only_that_sub_phase(tmp_path: Path, node_config: Path, kubeboot) -> None:
    root = tmp_path / "node"
    for path in ("certs/ca", "certs/apiserver"):
        result = kubeboot("init", "phase", path, "--config", str(node_config), "--root", str(root))
        assert result.returncode == 0, result.stderr
    pki = sorted(str(p.relative_to(root)) for p in root.rglob("*.*") if "pki" in str(p))
    assert pki == ["etc/kubernetes/pki/apiserver.crt", "etc/kubernetes/pki/apiserver.key",
                   "etc/kubernetes/pki/ca.crt", "etc/kubernetes/pki/ca.key"]


def test_skip_phases_leaves_exactly_those_artifacts_out(tmp_path: Path, node_config: Path, kubeboot) -> None:
    root = tmp_path / "node"
    result = kubeboot("init", "phase", "local", "--config", str(node_config), "--root", str(root),
                      "--skip-phases", "kubeconfig/super-admin,etcd")
    assert result.returncode == 0, result.stderr
    assert not (root / "etc/kubernetes/super-admin.conf").exists()
    assert not (root / "etc/kubernetes/manifests/etcd.yaml").exists()
    assert (root / "etc/kubernetes/admin.conf").exists()


def test_an_unknown_phase_path_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, node_config: Path, kubeboot
) -> None:
    root = tmp_path / "node"
    result = kubeboot("init", "phase", "certs/nope", "--config", str(node_config), "--root", str(root))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "unknown phase 'certs/nope'" in result.stderr
    assert not root.exists()


def test_phase_help_lists_the_tree_with_one_line_per_phase(kubeboot) -> None:
    result = kubeboot("init", "phase", "--help")
    assert result.returncode == 0
    for line in ("  certs ", "    apiserver-kubelet-client ", "  kubelet-start "):
        assert any(row.startswith(line) for row in result.stdout.splitlines()), line
