"""The kubelet flags kubeadm leaves in ``/var/lib/kubelet/kubeadm-flags.env`` that shape the Node.

Reads: ``KUBELET_KUBEADM_ARGS="..."`` from the node's ``kubeadm-flags.env`` (what systemd's drop-in
passes to a real kubelet). Writes: nothing. Like the kubelet: ``--node-labels=k=v,...`` become labels
of the Node it registers, ``--register-with-taints=k[=v]:Effect,...`` its taints at registration.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from kubeboot.config import constants as c
from kubeboot.sandbox.kubelet.layout import node_path


def kubeadm_args(root: Path) -> dict[str, str]:
    """``--name=value`` flags of kubeadm-flags.env (empty when there is none)."""
    try:
        text = node_path(root, c.KUBELET_FLAGS_ENV_FILE).read_text()
    except OSError:
        return {}
    _, _, value = text.strip().partition("=")
    out: dict[str, str] = {}
    quoted = shlex.split(value)  # the value is one double-quoted Go %q string, as the shell reads it
    for word in shlex.split(quoted[0]) if len(quoted) == 1 else quoted:
        name, _, arg = word.removeprefix("--").partition("=")
        out[name] = arg
    return out


def node_labels(args: dict[str, str]) -> dict[str, str]:
    pairs = [p.split("=", 1) for p in args.get("node-labels", "").split(",") if p]
    return {k: (v[0] if v else "") for k, *v in pairs}


def register_taints(args: dict[str, str]) -> list[dict[str, Any]]:
    """``key[=value]:Effect`` items as Node taints (the API omits an empty value)."""
    taints = []
    for item in (p for p in args.get("register-with-taints", "").split(",") if p):
        kv, _, effect = item.rpartition(":")
        key, _, value = kv.partition("=")
        taint: dict[str, Any] = {"key": key, "effect": effect}
        if value:
            taint["value"] = value
        taints.append(taint)
    return taints
