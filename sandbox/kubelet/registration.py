"""The kubelet's Node object: registered with the kubelet's own credentials and kept Ready by a heartbeat.

Reads: ``/etc/kubernetes/kubelet.conf`` (after the TLS bootstrap of ``tlsbootstrap`` when only
``bootstrap-kubelet.conf`` exists), the static Pods' images (the kubelet's version).
Writes: the Node ``<node name>`` through the API server; nothing on disk (``tlsbootstrap`` does).

As the kubelet (pkg/kubelet/kubelet_node_status.go): create the Node with its labels
(``kubernetes.io/hostname``, ``kubernetes.io/os``, ``kubernetes.io/arch`` and their beta twins) and
status (addresses InternalIP + Hostname, conditions, nodeInfo, capacity); when it exists already, patch
its labels and status; then every ``HEARTBEAT_SECONDS`` patch ``nodes/<name>/status`` (strategic merge)
with fresh condition heartbeats. While no API server answers it retries quietly: the first failure and
every change of failure are logged, not every attempt.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config import constants as c
from sandbox.kubelet import kubeclient, tlsbootstrap
from sandbox.kubelet.launch import image_tag
from sandbox.kubelet.layout import node_path

log = logging.getLogger("sandbox.kubelet")

HEARTBEAT_SECONDS = 10.0
RETRY_SECONDS = 2.0
KUBELET_CONF = f"{c.KUBERNETES_DIR}/{c.KUBELET_CONF}"
SMP = "application/strategic-merge-patch+json"
_CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
_KUBE_VERSION = re.compile(r"^v\d+\.\d+\.\d+")


def go_arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine.lower())


def kubelet_version(pods: list[dict[str, Any]]) -> str:
    """The Kubernetes version of the node: the image tag of its control-plane static Pods, if any."""
    for pod in pods:
        for container in (pod.get("spec") or {}).get("containers") or []:
            image = str(container.get("image") or "")
            name = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
            tag = image_tag(image)
            if name in _CONTROL_PLANE and _KUBE_VERSION.match(tag):
                return tag
    return ""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(now: str) -> list[dict[str, str]]:
    def cond(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now}
    return [
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]


def node_object(node_name: str, address: str, version: str, now: str) -> dict[str, Any]:
    """The Node the kubelet registers."""
    arch = go_arch()
    cpus = str(os.cpu_count() or 1)
    capacity = {"cpu": cpus, "memory": f"{_memory_kib()}Ki", "pods": "110", "ephemeral-storage": "0"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": node_name,
            "labels": {"kubernetes.io/hostname": node_name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
                       "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch},
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {},
        "status": {
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": node_name}],
            "conditions": conditions(now),
            "capacity": capacity, "allocatable": capacity,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": c.KUBELET_PORT}},
            "nodeInfo": {"kubeletVersion": version, "kubeProxyVersion": version, "operatingSystem": "linux",
                         "architecture": arch, "containerRuntimeVersion": "kubeboot-sandbox://1",
                         "kernelVersion": platform.release(), "osImage": "kubeboot sandbox",
                         "machineID": "", "systemUUID": "", "bootID": ""},
        },
    }


def _memory_kib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class NodeAgent:
    """Registers the Node and keeps it Ready (after a TLS bootstrap when needed)."""

    def __init__(self, root: Path, node_name: str, address: str,
                 versions: Callable[[], list[dict[str, Any]]] = list) -> None:
        self.root = root
        self.node_name = node_name
        self.address = address
        self.versions = versions
        self.registered = False
        self._last_error = ""

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step(stop)
                self._last_error = ""
            except Exception as e:  # an API server not up yet, or refusing: retried, logged on change
                message = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if message != self._last_error:
                    log.info("node status of %s not posted yet (will retry): %s", self.node_name, message)
                    self._last_error = message
                self.registered = False
            stop.wait(HEARTBEAT_SECONDS if self.registered else RETRY_SECONDS)

    def version(self, api: Any) -> str:
        found = kubelet_version(self.versions())
        if found:
            return found
        from kubernetes import client

        return str(json.loads(client.VersionApi(api).get_code(_preload_content=False).data)["gitVersion"])

    def step(self, stop: threading.Event) -> None:
        if not tlsbootstrap.wait_and_bootstrap(self.root, self.node_name, self.address, stop):
            return  # no credentials yet: a kubelet before kubeadm wrote its kubeconfig
        if not node_path(self.root, KUBELET_CONF).exists():
            return
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        with kubeclient.api_client(self.root, KUBELET_CONF, self.address) as api:
            core = client.CoreV1Api(api)
            now = _now()
            if not self.registered:
                body = node_object(self.node_name, self.address, self.version(api), now)
                try:
                    core.create_node(body, _preload_content=False)
                    log.info("registered node %s", self.node_name)
                except ApiException as e:
                    if e.status != 409:
                        raise
                    core.patch_node(self.node_name, {"metadata": {"labels": body["metadata"]["labels"]}},
                                    _content_type=SMP, _preload_content=False)
                    core.patch_node_status(self.node_name, {"status": body["status"]},
                                           _content_type=SMP, _preload_content=False)
                    log.info("node %s was registered already: labels and status updated", self.node_name)
                self.registered = True
                return
            try:
                # Merged by type: only the heartbeat moves, lastTransitionTime stays as registered.
                beats = [{k: v for k, v in cond.items() if k != "lastTransitionTime"} for cond in conditions(now)]
                core.patch_node_status(self.node_name, {"status": {"conditions": beats}},
                                       _content_type=SMP, _preload_content=False)
            except ApiException as e:
                if e.status == 404:  # the Node was deleted: register it again
                    self.registered = False
                    return
                raise
