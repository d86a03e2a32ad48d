"""Where a sandbox node's kubelet keeps its state, and what it reads from the KubeletConfiguration.

Reads: ``<root>/var/lib/kubelet/config.yaml`` (kubeadm's kubelet-start writes it). Writes nothing.

Files of the sandbox kubelet, all under the node root:
- ``/var/lib/kubeboot-sandbox/kubelet.pid``, ``kubelet.log``, ``kubelet.lock`` (held while a daemon runs),
  ``kubelet.stopped`` (while it is stopped on purpose), ``kubelet.starting`` (the pid launched last);
- ``/var/lib/kubeboot-sandbox/pods/<pod>/pid`` and ``state.json`` (argv, process start time, restarts):
  how a restarted daemon adopts its running pods and how ``sandbox down`` finds every one of them;
- ``/var/lib/kubeboot-sandbox/pods.json``: status of every pod for ``kubeboot sandbox status``;
- container logs the kubelet's way: ``/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restarts>.log``
  (the first run writes ``0.log``, the first restart ``1.log``: earlier runs stay readable, as
  ``kubectl logs --previous`` expects them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubeboot.config import constants as c

SANDBOX_DIR = "/var/lib/kubeboot-sandbox"
ENV_SANDBOX_DIR = "KUBEBOOT_SANDBOX_DIR"
ENV_SANDBOX_VERSION = "KUBEBOOT_SANDBOX_VERSION"
ENV_SANDBOX_HOSTNAME = "KUBEBOOT_SANDBOX_HOSTNAME"  # the node's name, as the pods' hostname


def node_path(root: Path, path: str) -> Path:
    """The host path of the absolute node path ``path``."""
    return root / path.lstrip("/")


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def sandbox_dir(self) -> Path:
        return node_path(self.root, SANDBOX_DIR)

    @property
    def pid_file(self) -> Path:
        return self.sandbox_dir / "kubelet.pid"

    @property
    def lock_file(self) -> Path:
        return self.sandbox_dir / "kubelet.lock"

    @property
    def stopped_file(self) -> Path:
        """Present while the kubelet is stopped on purpose (not to be restarted by the supervisor)."""
        return self.sandbox_dir / "kubelet.stopped"

    @property
    def starting_file(self) -> Path:
        """The pid of the daemon launched last (written before its own pid file exists)."""
        return self.sandbox_dir / "kubelet.starting"

    @property
    def log_file(self) -> Path:
        return self.sandbox_dir / "kubelet.log"

    @property
    def pods_dir(self) -> Path:
        return self.sandbox_dir / "pods"

    @property
    def status_file(self) -> Path:
        return self.sandbox_dir / "pods.json"

    def pod_dir(self, name: str) -> Path:
        return self.pods_dir / name

    @property
    def kubelet_config(self) -> Path:
        return node_path(self.root, c.KUBELET_CONFIG_FILE)


@dataclass(frozen=True)
class KubeletSettings:
    """The fields of the KubeletConfiguration the sandbox kubelet acts on (node paths as written)."""

    static_pod_path: str = c.MANIFESTS_DIR
    healthz_bind_address: str = "127.0.0.1"
    healthz_port: int = c.KUBELET_HEALTHZ_PORT
    client_ca_file: str = ""
    rotate_certificates: bool = False  # the kubelet's default; kubeadm writes true

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> KubeletSettings:
        x509 = ((doc.get("authentication") or {}).get("x509") or {})
        return cls(
            static_pod_path=str(doc.get("staticPodPath") or ""),  # the kubelet: no path, no static pods
            healthz_bind_address=str(doc.get("healthzBindAddress") or "127.0.0.1"),
            healthz_port=int(doc.get("healthzPort", c.KUBELET_HEALTHZ_PORT)),
            client_ca_file=str(x509.get("clientCAFile") or ""),
            rotate_certificates=doc.get("rotateCertificates") is True,
        )


def read_settings(root: Path) -> KubeletSettings:
    """The node's KubeletConfiguration; kubeadm's defaults while the file is not written yet."""
    try:
        doc = yaml.safe_load(Layout(root).kubelet_config.read_text())
    except FileNotFoundError:
        return KubeletSettings()
    if not isinstance(doc, dict):
        raise ValueError(f"{c.KUBELET_CONFIG_FILE}: not a KubeletConfiguration")
    return KubeletSettings.from_doc(doc)
