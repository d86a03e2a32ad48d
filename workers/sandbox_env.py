"""``kubeboot sandbox up|status|down``: simulated machines on this host, with everything they need.

A sandbox cluster ``sb<c>`` has nodes ``sb<c>-cp1`` (its first control-plane node) and ``sb<c>-n<k>``,
each with its own root directory, loopback address (``sandbox.addresses``), node worker (queue
``node.<name>``) and sandbox kubelet. One embedded Redis and one control worker serve them all.
Everything lives under ``<state dir>/sandbox``; ``sandbox.json`` there records what runs, so
``status`` and ``down`` work from any later process.

| file                               | what                                                          |
|------------------------------------|---------------------------------------------------------------|
| sandbox.json                       | clusters, nodes (name, address, root, queue), pids             |
| logs/<process>.log                 | output of the control worker and each node worker              |
| <cluster>/kubeadm.yaml             | the init config of the cluster's first control-plane node      |
| <cluster>/<node>/                  | the node's root: /etc/kubernetes, /var/lib/kubelet ... inside  |
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeboot.tasks.fsutil import atomic_write

V4 = "kubeadm.k8s.io/v1beta4"
STATE_FILE = "sandbox.json"


@dataclass
class SandboxNode:
    name: str
    cluster: str
    address: str
    root: str
    queue: str
    role: str  # control-plane | worker
    worker_pid: int = 0


@dataclass
class Sandbox:
    dir: str
    control_pid: int = 0
    nodes: list[SandboxNode] = field(default_factory=list)
    clusters: dict[str, str] = field(default_factory=dict)  # name -> config path
    # cluster blocks 127.77.<index>.0/24 reserved machine-wide (sandbox.addresses)
    indices: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, directory: Path) -> Sandbox | None:
        path = directory / STATE_FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls(dir=raw["dir"], control_pid=raw["control_pid"], clusters=raw["clusters"],
                   nodes=[SandboxNode(**n) for n in raw["nodes"]], indices=raw.get("indices", []))

    def save(self) -> None:
        path = Path(self.dir) / STATE_FILE
        atomic_write(path, json.dumps(asdict(self), indent=2))


def init_config(cluster: str, node: SandboxNode, version: str | None) -> list[dict[str, Any]]:
    """The kubeadm config of a sandbox cluster's first control-plane node."""
    cluster_doc: dict[str, Any] = {"apiVersion": V4, "kind": "ClusterConfiguration", "clusterName": cluster,
                                   "controlPlaneEndpoint": f"{node.address}:6443",
                                   "networking": {"podSubnet": "10.244.0.0/16"}}
    if version:
        cluster_doc["kubernetesVersion"] = version
    return [
        {"apiVersion": V4, "kind": "InitConfiguration",
         "localAPIEndpoint": {"advertiseAddress": node.address, "bindPort": 6443},
         # A simulated machine has no container runtime, no real kubelet binary and shares this host's
         # CPUs, memory and kernel settings with its siblings: preflight reports, it does not stop.
         "nodeRegistration": {"name": node.name, "ignorePreflightErrors": ["all"]}},
        cluster_doc,
    ]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class SandboxEnv:
    def __init__(self, directory: Path, out: Callable[[str], None]) -> None:
        self.dir = directory
        self.out = out
        self.logs = directory / "logs"
        self.cli = [sys.executable, "-m", "kubeboot.workers.cli"]

    def _spawn(self, name: str, args: list[str]) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen([*self.cli, *args], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        return proc.pid

    def up(self, clusters: int, nodes: int, version: str | None) -> Sandbox:
        from kubeboot.sandbox.addresses import node_address, reserve_cluster_indices

        existing = Sandbox.load(self.dir)
        if existing is not None and any(_alive(n.worker_pid) for n in existing.nodes):
            raise RuntimeError(f"a sandbox is already up in {self.dir}; `kubeboot sandbox down` first")
        self.dir.mkdir(parents=True, exist_ok=True)
        box = Sandbox(dir=str(self.dir), indices=reserve_cluster_indices(clusters, str(self.dir), _owner_alive))
        box.save()
        for c, index in enumerate(box.indices):
            cluster = f"sb{c + 1}"
            for k in range(1, nodes + 1):
                name = f"{cluster}-cp1" if k == 1 else f"{cluster}-n{k}"
                root = self.dir / cluster / name
                # A fresh sandbox gets fresh machines: files of an earlier sandbox in this directory
                # would name its old addresses.
                shutil.rmtree(root, ignore_errors=True)
                root.mkdir(parents=True, exist_ok=True)
                box.nodes.append(SandboxNode(name, cluster, node_address(index, k), str(root), f"node.{name}",
                                             "control-plane" if k == 1 else "worker"))
            config = self.dir / cluster / "kubeadm.yaml"
            first = box.nodes[-nodes]
            config.write_text(yaml.safe_dump_all(init_config(cluster, first, version), sort_keys=False))
            box.clusters[cluster] = str(config)
        box.control_pid = self._spawn("control-worker", ["worker", "control", "--concurrency", "4"])
        for node in box.nodes:
            node.worker_pid = self._spawn(f"node-worker-{node.name}", [
                "worker", "node", "--id", node.name, "--root", node.root, "--kubelet", "sandbox",
                "--address", node.address])
            self._kubelet(node).start(lambda line, n=node.name: self.out(f"[{n}] {line}"))
        box.save()
        return box

    def load(self) -> Sandbox:
        box = Sandbox.load(self.dir)
        if box is None:
            raise RuntimeError(f"no sandbox in {self.dir}; `kubeboot sandbox up` first")
        return box

    def _kubelet(self, node: SandboxNode) -> Any:
        from kubeboot.sandbox.kubelet.driver import SandboxKubelet

        return SandboxKubelet(node.root, node.name, node.address)

    def status(self) -> list[dict[str, Any]]:
        box = Sandbox.load(self.dir)
        if box is None:
            return []
        rows = []
        for node in box.nodes:
            kubelet = self._kubelet(node)
            pods_file = Path(node.root) / "var/lib/kubeboot-sandbox/pods.json"
            pods = json.loads(pods_file.read_text()) if pods_file.exists() else {}
            rows.append({"cluster": node.cluster, "node": node.name, "role": node.role, "address": node.address,
                         "queue": node.queue, "worker": _alive(node.worker_pid), "kubelet": kubelet.is_active(),
                         "pods": pods})
        return rows

    def down(self) -> list[int]:
        """Stop everything; returns the pids still alive afterwards (empty when all is gone)."""
        box = Sandbox.load(self.dir)
        if box is None:
            return []
        pids = [box.control_pid, *(n.worker_pid for n in box.nodes)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        for node in box.nodes:
            self._kubelet(node).stop_all(lambda line, n=node.name: self.out(f"[{n}] {line}"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        for pid in pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        time.sleep(0.2)
        left = [p for p in pids if _alive(p)]
        for node in box.nodes:
            left += [p for p in self._kubelet(node).pod_pids().values() if _alive(p)]
        if not left:
            from kubeboot.sandbox.addresses import release_cluster_indices

            release_cluster_indices(box.indices, str(self.dir))
        return left


def _owner_alive(owner: str, index: int) -> bool:
    """Whether the sandbox in directory ``owner`` still runs the cluster block ``index``."""
    box = Sandbox.load(Path(owner))
    if box is None or index not in box.indices:
        return False
    return _alive(box.control_pid) or any(_alive(n.worker_pid) for n in box.nodes)
