"""``kubeboot sandbox status``: what runs in a sandbox, as one document (``-o json`` prints it as is).

Reads: ``sandbox.json``, the supervisor's state, each load balancer's state file, the node roots' kubelet
and pod files, and asks the control planes themselves (``sandbox.clusterstatus``: API servers' /readyz,
etcd's member list and health). The document, stable for ``-o json``::

    {"dir": "<sandbox dir>", "batch": "<sandbox dir>/batch.yaml",
     "supervisor": {"pid": 123, "up": true},
     "clusters": [{"name": "sb1", "config": ".../sb1/kubeadm.yaml", "document": ".../sb1/cluster.yaml",
                   "endpoint": "127.77.0.254:6443",
                   "loadBalancer": {"address": "127.77.0.254", "pid": 124, "up": true,
                                    "backends": [{"address": "127.77.0.1:6443", "up": true, "reason": "readyz 200"}]},
                   "apiServers": [{"node": "sb1-cp1", "address": "127.77.0.1", "up": true}],
                   "etcdMembers": [{"name": "sb1-cp1", "clientURL": "https://127.77.0.1:2379", "learner": false,
                                    "up": true}],
                   "leaders": {"kube-controller-manager": "sb1-cp1_<uuid>", "kube-scheduler": "sb1-cp1_<uuid>"}}],
     "nodes": [{"cluster": "sb1", "node": "sb1-cp1", "role": "control-plane", "address": "127.77.0.1",
                "queue": "node.sb1-cp1", "worker": true, "kubelet": true, "restarts": {"worker": 0, "kubelet": 0},
                "pods": {...}}]}

``loadBalancer`` is null for a cluster with one control-plane node (its endpoint is that node's address).
``leaders`` holds each Lease's holderIdentity ("" when nobody holds it), null when no API server answers.
An empty document (``{}``) when no sandbox was ever brought up here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubeboot.workers.sandbox_env import Sandbox, SandboxEnv, SandboxNode


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def status(box: Sandbox, env: SandboxEnv) -> dict[str, Any]:
    from kubeboot.sandbox.supervise import read_state
    from kubeboot.workers.sandbox_env import alive

    units = read_state(Path(box.dir)).get("units") or {}
    supervisor_up = alive(box.supervisor_pid)

    def unit(name: str) -> dict[str, Any]:
        return dict(units.get(name) or {})

    return {
        "dir": box.dir,
        "batch": box.batch or None,
        "supervisor": {"pid": box.supervisor_pid, "up": supervisor_up},
        "clusters": [_cluster(box, name, unit(f"loadbalancer-{name}")) for name in box.clusters],
        "nodes": [_node(env, n, unit(f"node-worker-{n.name}"), unit(f"kubelet-{n.name}")) for n in box.nodes],
    }


def _cluster(box: Sandbox, name: str, lb_unit: dict[str, Any]) -> dict[str, Any]:
    from kubeboot.sandbox.clusterstatus import ControlPlaneNode, apiserver_up, etcd_members, leaders
    from kubeboot.workers.sandbox_env import alive

    planes = [ControlPlaneNode(n.name, n.address, Path(n.root)) for n in box.cluster_nodes(name, "control-plane")]
    lb = None
    if name in box.load_balancers:
        pid = int(lb_unit.get("pid") or 0)
        up = alive(pid)
        backends = _read_json(Path(box.dir) / name / "loadbalancer.json").get("backends") or []
        lb = {"address": box.load_balancers[name], "pid": pid, "up": up,
              "backends": backends if up else [{**b, "up": False} for b in backends]}
    servers = [{"node": p.name, "address": p.address, "up": apiserver_up(p)} for p in planes]
    return {"name": name, "config": box.clusters[name], "document": box.cluster_docs.get(name),
            "endpoint": box.endpoints.get(name, ""),
            "loadBalancer": lb,
            "apiServers": servers,
            "etcdMembers": etcd_members(planes),
            "leaders": leaders([p for p, s in zip(planes, servers, strict=True) if s["up"]])}


def _node(env: SandboxEnv, node: SandboxNode, worker: dict[str, Any], kubelet_unit: dict[str, Any]) -> dict[str, Any]:
    from kubeboot.workers.sandbox_env import alive

    kubelet = env.kubelet(node)
    pods = _read_json(Path(node.root) / "var/lib/kubeboot-sandbox/pods.json")
    return {"cluster": node.cluster, "node": node.name, "role": node.role, "address": node.address,
            "queue": node.queue, "worker": alive(int(worker.get("pid") or node.worker_pid)),
            "kubelet": kubelet.is_active(),
            "restarts": {"worker": int(worker.get("restarts") or 0), "kubelet": int(kubelet_unit.get("restarts") or 0)},
            "pods": pods}
