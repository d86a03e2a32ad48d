"""mark-control-plane (spec 2.10): labels and taints on the init node's Node object.

Reads: ``cfg.init.nodeRegistration.taints`` (None → kubeadm's default control-plane NoSchedule taint,
``[]`` → none), the admin kubeconfig from the run's secrets.
Writes: Node ``<node>``: labels ``node-role.kubernetes.io/control-plane: ""`` and
``node.kubernetes.io/exclude-from-external-load-balancers: ""``; the configured taints added when missing
(existing taints kept after them, as kubeadm's markControlPlaneNode orders them). Nothing is patched
when the Node already carries all of it. A Node not registered yet is a TemporaryError: its kubelet
registers it soon after the control plane is up.
"""

from __future__ import annotations

from typing import Any, Final

from kubeboot.config import constants as c
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import kubeapi
from kubeboot.tasks.phases.context import ControlContext
from kubeboot.tasks.phases.uploadconfig import admin_client

Obj = dict[str, Any]
LABELS: Final = (c.LABEL_CONTROL_PLANE, c.LABEL_EXCLUDE_FROM_LB)
DEFAULT_TAINT: Final[Obj] = {"key": c.LABEL_CONTROL_PLANE, "effect": "NoSchedule"}


def desired_taints(cfg: InitConfig) -> list[Obj]:
    taints = cfg.init.nodeRegistration.taints
    if taints is None:
        return [dict(DEFAULT_TAINT)]
    # The API omits an empty value; so do we, to compare like with like.
    return [{k: v for k, v in t.model_dump(mode="json", exclude_none=True).items() if v != ""} for t in taints]


def _identity(taint: Obj) -> tuple[str, str, str]:
    """What makes two taints the same taint (the API forbids two with one key and effect; timeAdded is
    set by the server for NoExecute)."""
    return str(taint.get("key")), str(taint.get("value") or ""), str(taint.get("effect") or "")


def taint_string(taint: Obj) -> str:
    """Go's ``Taint.ToString()``: ``key[=value]:effect``."""
    text = taint["key"] + (f"={taint['value']}" if taint.get("value") else "")
    return f"{text}:{taint['effect']}" if taint.get("effect") else text


def mark(node: Obj, taints: list[Obj]) -> bool:
    """kubeadm markControlPlaneNode on a Node dict: our labels set; when a taint of ours is missing,
    ours first then the node's others. True when anything changed."""
    meta = node.setdefault("metadata", {})
    labels = meta.get("labels") or {}
    spec = node.setdefault("spec", {})
    existing = list(spec.get("taints") or [])
    have = {_identity(t) for t in existing}
    ours = {_identity(t) for t in taints}
    missing_taint = any(_identity(t) not in have for t in taints)
    missing_label = any(labels.get(label) != "" for label in LABELS)
    meta["labels"] = {**labels, **dict.fromkeys(LABELS, "")}
    if missing_taint:
        spec["taints"] = [dict(t) for t in taints] + [t for t in existing if _identity(t) not in ours]
    return missing_taint or missing_label


def run_mark_control_plane(ctx: ControlContext) -> None:
    cfg = ctx.cfg
    taints = desired_taints(cfg)
    ctx.log("mark-control-plane", f"Marking the node {ctx.node} as control-plane by adding the labels: "
                                  f"[{' '.join(LABELS)}]")
    if taints:
        ctx.log("mark-control-plane", f"Marking the node {ctx.node} as control-plane by adding the taints "
                                      f"[{' '.join(taint_string(t) for t in taints)}]")
    api = admin_client(ctx)
    kubeapi.patch_node(api, ctx.node, lambda node: mark(node, taints),
                       f"error marking the node {ctx.node} as control-plane")
