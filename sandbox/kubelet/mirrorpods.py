"""Mirror Pods: the API server's view of a node's static Pods, kept by the kubelet.

Reads: the supervisor's static Pods and their status; the node's Pods in the API server (field selector
``spec.nodeName=<node>``), from the kubelet's pod informer (a list then a watch, as the real kubelet's
API pod source) once it has synced, by a list before. Writes: Pods (create, delete) and
``pods/<name>/status`` through the API server.

As the kubelet (pkg/kubelet/pod/mirror_client.go and the status manager): a mirror Pod is the static
Pod with ``spec.nodeName`` set, the annotations ``kubernetes.io/config.hash`` / ``config.mirror`` (the
static Pod's UID) / ``config.source: file``, and the Node as its controlling owner; a mirror Pod whose
hash no longer matches the static Pod is deleted and created again; one left by a removed static Pod
is deleted. Its status says Running/Pending, Ready, restarts and the node's address (hostNetwork).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from kubeboot.sandbox.informer import Informer
from kubeboot.sandbox.kubelet.staticpods import StaticPod

MIRROR = "kubernetes.io/config.mirror"
HASH = "kubernetes.io/config.hash"
SOURCE = "kubernetes.io/config.source"
SMP = "application/strategic-merge-patch+json"


def mirror_pod(pod: StaticPod, node_name: str, node_uid: str) -> dict[str, Any]:
    body = copy.deepcopy(pod.pod)
    body.pop("status", None)
    meta = body.setdefault("metadata", {})
    meta["name"] = pod.name
    meta["namespace"] = pod.namespace
    meta["annotations"] = {**(meta.get("annotations") or {}), HASH: pod.uid, MIRROR: pod.uid, SOURCE: "file"}
    meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid,
                                "controller": True}]
    body["spec"]["nodeName"] = node_name
    return body


def pod_status(entry: dict[str, Any], address: str) -> dict[str, Any]:
    """The Pod status of one supervisor status entry (``Supervisor.status()["pods"][i]``)."""
    running = entry["state"] == "running"
    ready = "True" if entry["ready"] else "False"
    started_at = entry.get("startedAt") or ""
    state: dict[str, Any] = {"running": {"startedAt": started_at}} if running else \
        {"waiting": {"reason": "CrashLoopBackOff" if entry["restarts"] else "ContainerCreating"}}
    return {
        "phase": "Running" if running else "Pending",
        "hostIP": address, "hostIPs": [{"ip": address}], "podIP": address, "podIPs": [{"ip": address}],
        "conditions": [{"type": t, "status": s} for t, s in (
            ("PodReadyToStartContainers", "True"), ("Initialized", "True"), ("Ready", ready),
            ("ContainersReady", ready), ("PodScheduled", "True"))],
        "containerStatuses": [{"name": entry["container"], "image": entry["image"], "imageID": "",
                               "containerID": f"kubeboot-sandbox://{entry['pid']}" if entry.get("pid") else "",
                               "ready": bool(entry["ready"]), "started": bool(entry["started"]),
                               "restartCount": entry["restarts"], "state": state}],
    }


class MirrorPods:
    """Keeps the node's mirror Pods in step with its static Pods; posts a status only when it changed."""

    def __init__(self, node_name: str, address: str) -> None:
        self.node_name = node_name
        self.address = address
        self._posted: dict[str, dict[str, Any]] = {}

    def sync(self, core: client.CoreV1Api, node_uid: str, pods: list[tuple[StaticPod, dict[str, Any]]],
             informer: Informer | None = None) -> None:
        if informer is not None and informer.synced.is_set():
            node_pods = informer.items()
        else:
            node_pods = json.loads(core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={self.node_name}", _preload_content=False).data).get("items") or []
        existing = {(p["metadata"].get("namespace", ""), p["metadata"]["name"]): p for p in node_pods
                    if MIRROR in (p["metadata"].get("annotations") or {})}
        wanted = set()
        for pod, entry in pods:
            key = (pod.namespace, pod.name)
            wanted.add(key)
            current = existing.get(key)
            if current is not None and current["metadata"]["annotations"].get(MIRROR) != pod.uid:
                self._delete(core, *key)
                current = None
            if current is None:
                self._create(core, pod.namespace, mirror_pod(pod, self.node_name, node_uid))
                self._posted.pop(pod.name, None)
            status = pod_status(entry, self.address)
            if self._posted.get(pod.name) != status:
                core.patch_namespaced_pod_status(pod.name, pod.namespace, {"status": status}, _content_type=SMP,
                                                 _preload_content=False)
                self._posted[pod.name] = status
        for key in existing.keys() - wanted:
            self._delete(core, *key)
            self._posted.pop(key[1], None)

    @staticmethod
    def _create(core: client.CoreV1Api, namespace: str, body: dict[str, Any]) -> None:
        try:
            core.create_namespaced_pod(namespace, body, _preload_content=False)
        except ApiException as e:
            if e.status != 409:  # made a moment ago, not in the informer's cache yet
                raise

    @staticmethod
    def _delete(core: client.CoreV1Api, namespace: str, name: str) -> None:
        try:
            core.delete_namespaced_pod(name, namespace, _preload_content=False)
        except ApiException as e:
            if e.status != 404:
                raise
