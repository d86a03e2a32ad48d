"""The static Pods of a node: the Pod manifests in the kubelet's staticPodPath, as the kubelet reads them.

Reads: ``<root><staticPodPath>/*`` (the path from ``/var/lib/kubelet/config.yaml``). Writes nothing.

Like the kubelet's file source (pkg/kubelet/config/file.go): every regular file of the directory whose
name does not start with a dot is read; a file that does not decode as a v1 Pod is skipped with a
warning (kubelet: "Could not process manifest file"); the Pod's name gets the node name appended
(``etcd`` on node ``cp1`` is ``etcd-cp1``), its namespace defaults to ``default``, and its UID is a hash
of the file's content, the node name and the file name, so any edit makes a new Pod. Two files naming
the same Pod: the first in name order wins, as the kubelet keeps the first it sees.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("kubeboot.sandbox.kubelet")


@dataclass(frozen=True)
class StaticPod:
    """One Pod manifest as the kubelet sees it."""

    name: str  # full name: <metadata.name>-<node name>
    namespace: str
    uid: str  # 32 hex digits, changes with any byte of the manifest
    file: Path
    pod: dict[str, Any]

    @property
    def container(self) -> dict[str, Any]:
        return dict(self.pod["spec"]["containers"][0])

    @property
    def container_name(self) -> str:
        return str(self.container.get("name") or "container")

    def log_dir(self, root: Path) -> Path:
        """The kubelet's Pod log directory: /var/log/pods/<namespace>_<name>_<uid>."""
        return root / "var/log/pods" / f"{self.namespace}_{self.name}_{self.uid}"


def pod_uid(content: bytes, node_name: str, file_name: str) -> str:
    """The kubelet's static Pod UID: an md5 over the manifest, the node and the source file."""
    h = hashlib.md5(usedforsecurity=False)
    for part in (content, node_name.encode(), file_name.encode()):
        h.update(part)
    return h.hexdigest()


def parse_pod(content: bytes, file: Path, node_name: str) -> StaticPod | None:
    """The StaticPod of one file, or None (with a warning) when it is not a usable Pod."""
    try:
        doc = yaml.safe_load(content)
    except yaml.YAMLError as e:
        log.warning("could not process manifest file %s: not YAML or JSON: %s", file, e)
        return None
    if not isinstance(doc, dict) or doc.get("kind") != "Pod" or doc.get("apiVersion") != "v1":
        log.warning("could not process manifest file %s: not a v1 Pod", file)
        return None
    meta = doc.get("metadata") or {}
    containers = (doc.get("spec") or {}).get("containers") or []
    if not meta.get("name") or not containers or not isinstance(containers[0], dict):
        log.warning("could not process manifest file %s: a Pod needs a name and a container", file)
        return None
    if len(containers) > 1:
        log.warning("pod %s has %d containers: the sandbox runs only the first (%s)",
                    meta["name"], len(containers), containers[0].get("name"))
    return StaticPod(
        name=f"{meta['name']}-{node_name}".lower(),
        namespace=str(meta.get("namespace") or "default"),
        uid=pod_uid(content, node_name, file.name),
        file=file,
        pod=doc,
    )


class ManifestDir:
    """The static Pod directory, read again on every poll; each file and problem is logged once."""

    def __init__(self, directory: Path, node_name: str) -> None:
        self.directory = directory
        self.node_name = node_name
        self._parsed: dict[tuple[str, bytes], StaticPod | None] = {}
        self._warned: set[str] = set()

    def read(self) -> dict[str, StaticPod]:
        """Every static Pod of the directory by full name; a missing directory has none."""
        pods: dict[str, StaticPod] = {}
        try:
            entries = sorted(self.directory.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return pods
        seen: dict[tuple[str, bytes], StaticPod | None] = {}
        for file in entries:
            if file.name.startswith(".") or not file.is_file():
                continue
            try:
                content = file.read_bytes()
            except OSError as e:  # removed or being replaced between listing and reading
                log.debug("skipping %s: %s", file, e)
                continue
            key = (file.name, hashlib.sha256(content).digest())
            pod = self._parsed[key] if key in self._parsed else parse_pod(content, file, self.node_name)
            seen[key] = pod
            if pod is None:
                continue
            if pod.name in pods:
                self._warn_once(f"duplicate static pod {pod.name} in {file}: keeping {pods[pod.name].file}")
                continue
            pods[pod.name] = pod
        self._parsed = seen  # forget files that changed or went away
        return pods

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)
