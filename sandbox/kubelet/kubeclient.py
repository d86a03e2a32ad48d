"""A ``kubernetes`` API client from one of the node's kubeconfig files, read through the node root.

Reads: the kubeconfig (``/etc/kubernetes/kubelet.conf`` or ``bootstrap-kubelet.conf``) and the files it
names. Writes: the client library's temporary copies of embedded certificates, under the sandbox dir.

A kubeconfig on the node names node paths (``client-certificate: /var/lib/kubelet/pki/...``): they are
read under the node root. A server on a loopback name is the node's own address (``sandbox.addresses``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.config.kube_config import load_kube_config_from_dict

from kubeboot.sandbox.addresses import map_loopback
from kubeboot.sandbox.kubelet.layout import Layout, node_path

_PATH_KEYS = {"cluster": ("certificate-authority",), "user": ("client-certificate", "client-key", "tokenFile")}


def read_kubeconfig(root: Path, path: str) -> dict[str, Any]:
    doc = yaml.safe_load(node_path(root, path).read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a kubeconfig")
    return doc


def rooted(doc: dict[str, Any], root: Path, address: str) -> dict[str, Any]:
    """The kubeconfig with its file paths under the node root and loopback servers at ``address``."""
    out = copy.deepcopy(doc)
    for section, inner in (("clusters", "cluster"), ("users", "user")):
        for entry in out.get(section) or []:
            body = entry.get(inner) or {}
            for key in _PATH_KEYS[inner]:
                if body.get(key):
                    body[key] = str(node_path(root, str(body[key])))
            if inner == "cluster" and body.get("server"):
                body["server"] = map_loopback(str(body["server"]), address)
    return out


def with_client_pem(doc: dict[str, Any], pem_path: str) -> dict[str, Any]:
    """The kubeconfig with its current user authenticating with the certificate and key in ``pem_path``
    (what the kubelet's rotating transport does with the certificate manager's current pair)."""
    out = copy.deepcopy(doc)
    context = next((c.get("context") or {} for c in out.get("contexts") or []
                    if c.get("name") == out.get("current-context")), {})
    for entry in out.get("users") or []:
        if entry.get("name") == context.get("user"):
            entry["user"] = {"client-certificate": pem_path, "client-key": pem_path}
    return out


def api_client(root: Path, path: str, address: str, *, client_pem: str | None = None) -> client.ApiClient:
    """An ApiClient authenticated as the kubeconfig at node path ``path`` says, or with the certificate
    and key of the node file ``client_pem``."""
    tmp = Layout(root).sandbox_dir / "tmp"
    tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
    configuration = client.Configuration()
    doc = read_kubeconfig(root, path)
    if client_pem is not None:
        doc = with_client_pem(doc, client_pem)
    load_kube_config_from_dict(rooted(doc, root, address),
                               client_configuration=configuration, persist_config=False, temp_file_path=str(tmp))
    configuration.retries = False  # the caller retries on its own schedule
    return client.ApiClient(configuration)
