"""The sandbox kubelet runs the real etcd from kubeboot's generated etcd.yaml to health, on the node's address."""

from __future__ import annotations

import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import yaml

from kubeboot.config.loader import build_init_config
from kubeboot.sandbox.kubelet import process
from kubeboot.sandbox.kubelet.driver import SandboxKubelet
from kubeboot.sandbox.kubelet.launch import etcd_version, find_etcd
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases.certs import run_cert
from kubeboot.tasks.phases.context import NodeContext
from kubeboot.tasks.phases.etcd import run_etcd_local
from kubeboot.tasks.phases.kubeletstart import write_kubelet_files

pytestmark = pytest.mark.integration
V4 = "kubeadm.k8s.io/v1beta4"
PKI = "/etc/kubernetes/pki/etcd"
T = TypeVar("T")


def eventually(get: Callable[[], T | None], what: str, timeout: float) -> T:
    """Poll ``get`` until it returns something (a bounded wait for etcd, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = get()
        if value is not None and value is not False:
            return value
        time.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def etcd_node(tmp_path: Path, etcd_binary: str) -> Iterator[tuple[SandboxKubelet, NodeFS, str]]:
    h = zlib.crc32(str(tmp_path).encode())
    address = f"127.61.{h % 250 + 1}.{(h >> 8) % 250 + 1}"  # the node's own address, advertised too
    cfg = build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "etcd-cp1"},
         "localAPIEndpoint": {"advertiseAddress": address}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256"},
    ])
    ctx = NodeContext(cfg=cfg, fs=NodeFS(tmp_path / "root"), out=lambda _l: None)
    for name in ("etcd-ca", "etcd-server", "etcd-peer", "etcd-healthcheck-client"):
        run_cert(ctx, name)
    run_etcd_local(ctx)
    write_kubelet_files(ctx)
    kubelet = SandboxKubelet(ctx.fs.root, "etcd-cp1", address)
    try:
        yield kubelet, ctx.fs, address
    finally:
        kubelet.stop_all()


def etcdctl(fs: NodeFS, address: str) -> subprocess.CompletedProcess[str]:
    etcd = find_etcd()
    assert etcd is not None
    pki = fs.path(PKI)
    return subprocess.run(
        [str(Path(etcd).with_name("etcdctl")), f"--endpoints=https://{address}:2379", f"--cacert={pki / 'ca.crt'}",
         f"--cert={pki / 'healthcheck-client.crt'}", f"--key={pki / 'healthcheck-client.key'}",
         "--dial-timeout=2s", "--command-timeout=3s", "endpoint", "health"],
        capture_output=True, text=True, timeout=60, check=False)


def test_the_generated_etcd_manifest_runs_the_real_etcd_to_health(
        etcd_node: tuple[SandboxKubelet, NodeFS, str]) -> None:
    kubelet, fs, address = etcd_node
    manifest = yaml.safe_load(fs.path("/etc/kubernetes/manifests/etcd.yaml").read_text())
    assert "--listen-client-urls=https://127.0.0.1:2379," + f"https://{address}:2379" in \
        manifest["spec"]["containers"][0]["command"]
    lines: list[str] = []
    kubelet.start(lines.append)
    assert lines == []
    result = eventually(lambda: (r := etcdctl(fs, address)).returncode == 0 and r, "etcdctl endpoint health", 90)
    assert "is healthy" in result.stdout + result.stderr

    state = process.read_json(fs.path("/var/lib/kubeboot-sandbox/pods/etcd-etcd-cp1/state.json"))
    assert state is not None
    argv = state["argv"]
    assert f"--listen-client-urls=https://{address}:2379" in argv  # 127.0.0.1 mapped, the duplicate dropped
    assert f"--data-dir={fs.path('/var/lib/etcd')}" in argv
    log = fs.path("/var/lib/kubeboot-sandbox/kubelet.log").read_text()
    found = etcd_version(argv[0])
    if found is not None and found < (3, 6, 0):
        assert "--experimental-initial-corrupt-check=true" in argv
        assert "--experimental-watch-progress-notify-interval=5s" in argv
        assert ("translated --feature-gates=InitialCorruptCheck=true to --experimental-initial-corrupt-check=true"
                in log)
    if found is not None and found < (3, 5, 11):
        assert "has no /livez and /readyz: probing them as /health" in log
        # The readiness probe (/readyz, every second) goes to /health on the metrics URL: the pod turns ready
        # once its startup probe passed (initialDelaySeconds 10 in kubeadm's manifest).
        pods = fs.path("/var/lib/kubeboot-sandbox/pods.json")
        eventually(lambda: '"ready": true' in pods.read_text(), "etcd ready by its probes", 60)
