"""kubeboot's node marker: which cluster (by CA) the files on this node belong to.

Writes: ``KUBEBOOT_NODE_MARKER`` (JSON, 0600) as soon as the cluster CA exists, with
``{"clusterName", "node", "caCertHash"}`` where ``caCertHash`` is ``sha256:<hex>`` of the CA's public
key (the same hash ``kubeadm join --discovery-token-ca-cert-hash`` uses). Reads: the same file.

kubeadm's preflight refuses a node that already holds manifests or a populated etcd dir, which makes
an interrupted ``init`` impossible to re-run (kubeadm-spec 5.1). The marker lets preflight tell files
left by an earlier run of *this* cluster (same CA hash: resume) from somebody else's (conflict).
"""

from __future__ import annotations

import json
from typing import Any

from kubeboot.config.constants import KUBEBOOT_NODE_MARKER
from kubeboot.tasks.fsutil import NodeFS

MARKER_MODE = 0o600
MARKER_DIR_MODE = 0o700


def marker_record(cluster_name: str, node: str, ca_cert_hash: str) -> dict[str, str]:
    return {"clusterName": cluster_name, "node": node, "caCertHash": ca_cert_hash}


def write_node_marker(fs: NodeFS, record: dict[str, str]) -> bool:
    """Write the marker; False when it already said exactly this (file and mtime untouched)."""
    data = json.dumps(record, indent=2, sort_keys=True) + "\n"
    return fs.write(KUBEBOOT_NODE_MARKER, data, mode=MARKER_MODE, dir_mode=MARKER_DIR_MODE)


def read_node_marker(fs: NodeFS) -> dict[str, Any] | None:
    """The marker's record, or None when there is none or it cannot be read as a JSON object."""
    raw = fs.read_bytes(KUBEBOOT_NODE_MARKER)
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
