"""The kubelet's Node object: registered with the kubelet's own credentials and kept Ready by a heartbeat.

Reads: ``/etc/kubernetes/kubelet.conf`` (after the TLS bootstrap of ``tlsbootstrap`` when only
``bootstrap-kubelet.conf`` exists), the static Pods' images (the kubelet's version).
Writes: the Node ``<node name>`` and its mirror Pods through the API server; nothing on disk
(``tlsbootstrap`` does).

As the kubelet (pkg/kubelet/kubelet_node_status.go): create the Node with its labels
(``kubernetes.io/hostname``, ``kubernetes.io/os``, ``kubernetes.io/arch`` and their beta twins) and
status (addresses InternalIP + Hostname, conditions, nodeInfo, capacity); when it exists already, patch
its labels and status; then every ``HEARTBEAT_SECONDS`` patch ``nodes/<name>/status`` (strategic merge)
with fresh condition heartbeats; and keep the mirror Pods of the static Pods (``mirrorpods``), the
node's Pods known through a watch (``sandbox.informer``), not a list every pass. While no
API server answers it retries quietly: the first failure and every change of failure are logged, not
every attempt.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubeboot.config import constants as c
from kubeboot.sandbox.informer import Informer
from kubeboot.sandbox.kubelet import kubeclient, kubeletflags, tlsbootstrap
from kubeboot.sandbox.kubelet.launch import image_tag
from kubeboot.sandbox.kubelet.layout import node_path
from kubeboot.sandbox.kubelet.mirrorpods import MirrorPods
from kubeboot.sandbox.kubelet.staticpods import StaticPod

log = logging.getLogger("kubeboot.sandbox.kubelet")

HEARTBEAT_SECONDS = 10.0
# Until the Node is registered. The real kubelet retries from 100 ms, doubling up to 7 s; a fixed 2 s here
# left mark-control-plane (which needs the Node) finding none, and retrying, in about one init in three.
RETRY_SECONDS = 0.5
SYNC_SECONDS = 1.0  # mirror Pod status follows the pods within about a second
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


PodSource = Callable[[], list[tuple[StaticPod, dict[str, Any]]]]


def _no_pods() -> list[tuple[StaticPod, dict[str, Any]]]:
    return []


class NodeAgent:
    """Registers the Node, keeps it Ready and its mirror Pods current (after a TLS bootstrap when needed)."""

    def __init__(self, root: Path, node_name: str, address: str, pods: PodSource = _no_pods) -> None:
        self.root = root
        self.node_name = node_name
        self.address = address
        self.pods = pods
        self.registered = False
        self.node_uid = ""
        self.mirrors = MirrorPods(node_name, address)
        self.informer: Informer | None = None
        self._last_beat = 0.0
        self._errors: dict[str, str] = {}

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self._attempt("node status", lambda: self.step(stop))
                stop.wait(SYNC_SECONDS if self.registered else RETRY_SECONDS)
        finally:
            if self.informer is not None:
                self.informer.stop()

    def _pods_informer(self) -> Informer:
        """The node's Pods, listed and watched with the kubelet's current credentials."""
        if self.informer is None:
            self.informer = Informer(lambda: kubeclient.api_client(self.root, KUBELET_CONF, self.address),
                                     "/api/v1/pods", {"fieldSelector": f"spec.nodeName={self.node_name}"}, log)
            self.informer.start("pods-informer")
        return self.informer

    def _attempt(self, what: str, action: Callable[[], None]) -> bool:
        """Run ``action``; a failure (an API server not up yet, a refusal) is logged when it changes."""
        try:
            action()
        except Exception as e:
            message = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if self._errors.get(what) != message:
                log.info("%s of %s not posted yet (will retry): %s", what, self.node_name, message)
                self._errors[what] = message
            return False
        self._errors.pop(what, None)
        return True

    def version(self, api: Any) -> str:
        found = kubelet_version([pod.pod for pod, _ in self.pods()])
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

        with kubeclient.api_client(self.root, KUBELET_CONF, self.address) as api:
            core = client.CoreV1Api(api)
            if not self.registered:
                self._register(core, api)
            elif time.monotonic() - self._last_beat >= HEARTBEAT_SECONDS:
                self._heartbeat(core)
            if self.registered:
                informer = self._pods_informer()
                self._attempt("mirror pods", lambda: self.mirrors.sync(core, self.node_uid, self.pods(), informer))

    def _register(self, core: Any, api: Any) -> None:
        from kubernetes.client.rest import ApiException

        body = node_object(self.node_name, self.address, self.version(api), _now())
        flags = kubeletflags.kubeadm_args(self.root)  # what kubeadm-flags.env tells a real kubelet
        body["metadata"]["labels"].update(kubeletflags.node_labels(flags))
        if kubeletflags.register_taints(flags):
            body["spec"]["taints"] = kubeletflags.register_taints(flags)
        try:
            created = core.create_node(body, _preload_content=False)
            log.info("registered node %s", self.node_name)
        except ApiException as e:
            if e.status != 409:
                raise
            core.patch_node(self.node_name, {"metadata": {"labels": body["metadata"]["labels"]}},
                            _content_type=SMP, _preload_content=False)
            created = core.patch_node_status(self.node_name, {"status": body["status"]},
                                             _content_type=SMP, _preload_content=False)
            log.info("node %s was registered already: labels and status updated", self.node_name)
        self.node_uid = str(json.loads(created.data)["metadata"].get("uid", ""))
        self.registered = True
        self._last_beat = time.monotonic()

    def _heartbeat(self, core: Any) -> None:
        from kubernetes.client.rest import ApiException

        # Merged by type: only the heartbeat moves, lastTransitionTime stays as registered.
        beats = [{k: v for k, v in cond.items() if k != "lastTransitionTime"} for cond in conditions(_now())]
        try:
            core.patch_node_status(self.node_name, {"status": {"conditions": beats}},
                                   _content_type=SMP, _preload_content=False)
        except ApiException as e:
            if e.status == 404:  # the Node was deleted: register it again
                self.registered = False
                return
            raise
        self._last_beat = time.monotonic()
