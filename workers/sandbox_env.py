"""``kubeboot sandbox up|status|down``: simulated machines on this host, with everything they need.

A sandbox cluster ``sb<c>`` has control-plane nodes ``sb<c>-cp1..K`` and worker nodes ``sb<c>-w1..W``,
each with its own root directory, loopback address (``sandbox.addresses``: ``127.77.<block>.1..K`` for
the control planes, then the workers), node worker (queue ``node.<name>``) and sandbox kubelet. A
cluster with more than one control-plane node gets a load balancer (``sandbox.loadbalancer``) on its
block's endpoint address ``.254``, port 6443, in front of the control-plane nodes' API servers, and
its ``controlPlaneEndpoint`` is that address, like kind's external load balancer; with one, the
endpoint is the node's own address. One embedded Redis and one control worker serve every cluster.

``up`` writes what must run into ``supervise.json`` and starts one supervisor (``sandbox.supervise``),
which starts every worker, load balancer and kubelet and restarts the ones that die, as systemd would.
``down`` stops the supervisor first, then everything. Everything lives under ``<state dir>/sandbox``;
``sandbox.json`` there records the sandbox, so ``status`` and ``down`` work from any later process.

| file                               | what                                                              |
|------------------------------------|-------------------------------------------------------------------|
| sandbox.json                       | clusters (config, endpoint, load balancer), nodes, first pids      |
| supervise.json                     | the units the supervisor keeps running (command lines, kubelets)   |
| supervise-state.json               | the supervisor's pid, each unit's current pid and restart count    |
| logs/<unit>.log                    | output of the supervisor, the workers and the load balancers       |
| <cluster>/kubeadm.yaml             | the init config of the cluster's first control-plane node          |
| <cluster>/cluster.yaml             | the cluster as a Cluster document (``kubeboot submit cluster -f``)  |
| batch.yaml                         | every cluster as a Batch document (``kubeboot submit batch -f``)    |
| <cluster>/loadbalancer.json        | the load balancer's backends and whether each is up                |
| <cluster>/<node>/                  | the node's root: /etc/kubernetes, /var/lib/kubelet ... inside      |
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

from kubeboot.config.constants import KUBEBOOT_API_VERSION
from kubeboot.tasks.fsutil import atomic_write

V4 = "kubeadm.k8s.io/v1beta4"
CLUSTER_API = KUBEBOOT_API_VERSION
STATE_FILE = "sandbox.json"
API_PORT = 6443
START_DEADLINE = 60.0  # bound of the wait for the supervisor to have started every unit


@dataclass
class SandboxNode:
    name: str
    cluster: str
    address: str
    root: str
    queue: str
    role: str  # control-plane | worker
    worker_pid: int = 0  # the first node worker's (the supervisor's state has the current one)


@dataclass
class Sandbox:
    dir: str
    control_pid: int = 0
    nodes: list[SandboxNode] = field(default_factory=list)
    clusters: dict[str, str] = field(default_factory=dict)  # name -> config path
    # cluster blocks 127.77.<index>.0/24 reserved machine-wide (sandbox.addresses)
    indices: list[int] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)  # cluster -> controlPlaneEndpoint host:port
    load_balancers: dict[str, str] = field(default_factory=dict)  # cluster -> load balancer address
    supervisor_pid: int = 0
    cluster_docs: dict[str, str] = field(default_factory=dict)  # cluster -> its Cluster document (cluster.yaml)
    batch: str = ""  # the Batch document of every cluster (batch.yaml)

    @classmethod
    def load(cls, directory: Path) -> Sandbox | None:
        path = directory / STATE_FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        nodes = [SandboxNode(**n) for n in raw.pop("nodes")]
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__}, nodes=nodes)

    def save(self) -> None:
        atomic_write(Path(self.dir) / STATE_FILE, json.dumps(asdict(self), indent=2))

    def cluster_nodes(self, cluster: str, role: str | None = None) -> list[SandboxNode]:
        return [n for n in self.nodes if n.cluster == cluster and role in (None, n.role)]


def node_names(cluster: str, control_planes: int, workers: int) -> list[tuple[str, str]]:
    """(name, role) of a cluster's nodes in address order: control planes first."""
    return [*((f"{cluster}-cp{k}", "control-plane") for k in range(1, control_planes + 1)),
            *((f"{cluster}-w{k}", "worker") for k in range(1, workers + 1))]


def init_config(cluster: str, node: SandboxNode, endpoint: str, version: str | None) -> list[dict[str, Any]]:
    """The kubeadm config of a sandbox cluster's first control-plane node."""
    cluster_doc: dict[str, Any] = {"apiVersion": V4, "kind": "ClusterConfiguration", "clusterName": cluster,
                                   "controlPlaneEndpoint": endpoint,
                                   "networking": {"podSubnet": "10.244.0.0/16"}}
    if version:
        cluster_doc["kubernetesVersion"] = version
    return [
        {"apiVersion": V4, "kind": "InitConfiguration",
         "localAPIEndpoint": {"advertiseAddress": node.address, "bindPort": API_PORT},
         # A simulated machine has no container runtime, no real kubelet binary and shares this host's
         # CPUs, memory and kernel settings with its siblings: preflight reports, it does not stop.
         "nodeRegistration": {"name": node.name, "ignorePreflightErrors": ["all"]}},
        cluster_doc,
    ]


def cluster_document(cluster: str, nodes: list[SandboxNode], endpoint: str, version: str | None) -> dict[str, Any]:
    """The sandbox cluster as a kubeboot Cluster document (its nodes' workers are the sandbox's)."""
    config: dict[str, Any] = {"controlPlaneEndpoint": endpoint, "networking": {"podSubnet": "10.244.0.0/16"}}
    if version:
        config["kubernetesVersion"] = version
    # As in init_config: a simulated machine's preflight reports, it does not stop.
    return {"apiVersion": CLUSTER_API, "kind": "Cluster", "metadata": {"name": cluster},
            "spec": {"clusterConfiguration": config,
                     "nodes": [{"name": n.name, "address": n.address, "role": n.role,
                                "ignorePreflightErrors": ["all"]} for n in nodes]}}


def alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def unit_pids(directory: Path) -> dict[str, int]:
    """Each supervised unit's current pid, from the supervisor's state file."""
    from kubeboot.sandbox.supervise import read_state

    return {name: int(u.get("pid") or 0) for name, u in (read_state(directory).get("units") or {}).items()}


class SandboxEnv:
    def __init__(self, directory: Path, out: Callable[[str], None]) -> None:
        self.dir = directory
        self.out = out
        self.logs = directory / "logs"
        self.cli = [sys.executable, "-m", "kubeboot.workers.cli"]

    # --- up ---------------------------------------------------------------------------------------
    def up(self, clusters: int, control_planes: int, workers: int, version: str | None) -> Sandbox:
        from kubeboot.sandbox.addresses import reserve_cluster_indices

        existing = Sandbox.load(self.dir)
        if existing is not None and _running(existing):
            raise RuntimeError(f"a sandbox is already up in {self.dir}; `kubeboot sandbox down` first")
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in ("supervise-state.json", "supervise.json"):
            (self.dir / stale).unlink(missing_ok=True)
        shutil.rmtree(self.dir / "stopped", ignore_errors=True)  # units an earlier sandbox stopped on purpose
        box = Sandbox(dir=str(self.dir), indices=reserve_cluster_indices(clusters, str(self.dir), _owner_alive))
        box.save()
        for c, index in enumerate(box.indices):
            self._machines(box, f"sb{c + 1}", index, control_planes, workers, version)
        self._keys(box)
        self._documents(box, version)
        atomic_write(self.dir / "supervise.json", json.dumps({"units": self._units(box)}, indent=2))
        box.supervisor_pid = self._spawn_supervisor()
        box.save()
        self._wait_started(box)
        return box

    def _machines(self, box: Sandbox, cluster: str, index: int, control_planes: int, workers: int,
                  version: str | None) -> None:
        from kubeboot.sandbox.addresses import endpoint_address, node_address

        for k, (name, role) in enumerate(node_names(cluster, control_planes, workers), start=1):
            root = self.dir / cluster / name
            # A fresh sandbox gets fresh machines: files of an earlier sandbox in this directory
            # would name its old addresses.
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True, exist_ok=True)
            box.nodes.append(SandboxNode(name, cluster, node_address(index, k), str(root), f"node.{name}", role))
        first = box.cluster_nodes(cluster, "control-plane")[0]
        if control_planes > 1:
            box.load_balancers[cluster] = endpoint_address(index)
            box.endpoints[cluster] = f"{box.load_balancers[cluster]}:{API_PORT}"
        else:
            box.endpoints[cluster] = f"{first.address}:{API_PORT}"
        (self.dir / cluster / "loadbalancer.json").unlink(missing_ok=True)
        config = self.dir / cluster / "kubeadm.yaml"
        atomic_write(config, yaml.safe_dump_all(init_config(cluster, first, box.endpoints[cluster], version),
                                                sort_keys=False))
        box.clusters[cluster] = str(config)

    def _keys(self, box: Sandbox) -> None:
        """Each node worker's key pair, pinned by the control side, and its pin of the control side's keys,
        made as ``kubeboot deploy node-key`` / ``register-node`` / ``control-public-key`` make them on real
        machines (``tasks.trust.keyring``): the sandbox's runs are signed and sealed like a deployment's."""
        from kubeboot.config.settings import Settings
        from kubeboot.tasks.trust.keyring import provision_node

        settings = Settings.from_env()
        for node in box.nodes:
            provision_node(settings, node.queue.removeprefix("node."))

    def _documents(self, box: Sandbox, version: str | None) -> None:
        """``<cluster>/cluster.yaml`` for ``kubeboot submit cluster`` and ``batch.yaml`` of them all for
        ``kubeboot submit batch`` (``config.cluster``, ``config.batch``)."""
        docs = []
        for cluster in box.clusters:
            doc = cluster_document(cluster, box.cluster_nodes(cluster), box.endpoints[cluster], version)
            path = self.dir / cluster / "cluster.yaml"
            atomic_write(path, yaml.safe_dump(doc, sort_keys=False))
            box.cluster_docs[cluster] = str(path)
            docs.append(doc)
        batch = {"apiVersion": CLUSTER_API, "kind": "Batch", "metadata": {"name": "sandbox"},
                 "spec": {"concurrency": len(docs), "clusters": docs}}
        atomic_write(self.dir / "batch.yaml", yaml.safe_dump(batch, sort_keys=False))
        box.batch = str(self.dir / "batch.yaml")

    def _units(self, box: Sandbox) -> list[dict[str, Any]]:
        """What the supervisor keeps running: the command lines (the sandbox package does not import the
        workers) and the kubelets."""
        def command(name: str, argv: list[str]) -> dict[str, Any]:
            return {"name": name, "argv": argv, "log": str(self.logs / f"{name}.log")}

        units = [command("control-worker", [*self.cli, "worker", "control", "--concurrency", "4"])]
        for cluster, address in box.load_balancers.items():
            backends = [f"{n.address}:{API_PORT}={n.root}/etc/kubernetes/pki/ca.crt"
                        for n in box.cluster_nodes(cluster, "control-plane")]
            units.append(command(f"loadbalancer-{cluster}", [
                sys.executable, "-m", "kubeboot.sandbox.loadbalancer", "--listen", f"{address}:{API_PORT}",
                *(arg for b in backends for arg in ("--backend", b)),
                "--state", str(self.dir / cluster / "loadbalancer.json")]))
        for node in box.nodes:
            units.append(command(f"node-worker-{node.name}", [
                *self.cli, "worker", "node", "--id", node.name, "--root", node.root, "--kubelet", "sandbox",
                "--address", node.address]))
            units.append({"name": f"kubelet-{node.name}",
                          "kubelet": {"root": node.root, "node": node.name, "address": node.address}})
        return units

    def _spawn_supervisor(self) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / "supervise.log").open("ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "kubeboot.sandbox.supervise", "--dir", str(self.dir)],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        return proc.pid

    def _wait_started(self, box: Sandbox) -> None:
        """Until the supervisor runs every unit and each kubelet answers /healthz (bounded)."""
        deadline = time.monotonic() + START_DEADLINE
        wanted = {u["name"] for u in self._units(box)}
        pids = unit_pids(self.dir)
        while not (wanted <= set(pids) and all(pids[name] for name in wanted)):
            if not alive(box.supervisor_pid) or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox supervisor did not start every process; see {self.logs}/supervise.log")
            time.sleep(0.1)
            pids = unit_pids(self.dir)
        box.control_pid = pids["control-worker"]
        for node in box.nodes:
            node.worker_pid = pids[f"node-worker-{node.name}"]
        box.save()
        for node in box.nodes:
            kubelet = self.kubelet(node)
            if not kubelet.wait_healthy(max(1.0, deadline - time.monotonic())):
                self.out(f"[{node.name}] WARNING: the sandbox kubelet is not healthy at {kubelet.healthz_url}; "
                         f"see {kubelet.layout.log_file}")

    # --- status and down ---------------------------------------------------------------------------
    def load(self) -> Sandbox:
        box = Sandbox.load(self.dir)
        if box is None:
            raise RuntimeError(f"no sandbox in {self.dir}; `kubeboot sandbox up` first")
        return box

    def kubelet(self, node: SandboxNode) -> Any:
        from kubeboot.sandbox.kubelet.driver import SandboxKubelet

        return SandboxKubelet(node.root, node.name, node.address)

    def status(self) -> dict[str, Any]:
        from kubeboot.workers.sandbox_status import status

        box = Sandbox.load(self.dir)
        return status(box, self) if box is not None else {}

    def down(self) -> list[int]:
        """Stop the supervisor, then everything; returns the pids still alive afterwards (none when all is gone)."""
        box = Sandbox.load(self.dir)
        if box is None:
            return []
        _stop_group(box.supervisor_pid, 10)  # first: nothing may be restarted behind our back
        pids = sorted({box.control_pid, *(n.worker_pid for n in box.nodes), *unit_pids(self.dir).values()} - {0})
        kubelet_pids = {self.kubelet(n).daemon_pid() for n in box.nodes}
        pids = [p for p in pids if p not in kubelet_pids]  # kubelets stop through their driver, below
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        for node in box.nodes:
            self.kubelet(node).stop_all(lambda line, n=node.name: self.out(f"[{n}] {line}"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.1)
        for pid in pids:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        time.sleep(0.2)
        left = [p for p in [box.supervisor_pid, *pids] if alive(p)]
        for node in box.nodes:
            left += [p for p in self.kubelet(node).pod_pids().values() if alive(p)]
        if not left:
            from kubeboot.sandbox.addresses import release_cluster_indices

            release_cluster_indices(box.indices, str(self.dir))
        return left


def _stop_group(pid: int, timeout: float) -> None:
    if not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _running(box: Sandbox) -> bool:
    directory = Path(box.dir)
    return alive(box.supervisor_pid) or alive(box.control_pid) or any(alive(n.worker_pid) for n in box.nodes) \
        or any(alive(p) for p in unit_pids(directory).values())


def _owner_alive(owner: str, index: int) -> bool:
    """Whether the sandbox in directory ``owner`` still runs the cluster block ``index``."""
    box = Sandbox.load(Path(owner))
    if box is None or index not in box.indices:
        return False
    return _running(box)
