"""Phases ``control-plane-join/mark-control-plane`` and ``wait-control-plane`` of a control-plane join
(kubeadm v1.36 cmd/phases/join/controlplanejoin.go, waitcontrolplane.go).

``mark-control-plane`` runs on the control worker, as in init: the labels and taints of
``tasks.phases.markcontrolplane`` on the joined Node, with the admin kubeconfig the node's
``control-plane-prepare/kubeconfig`` left in the run secrets; a control-plane join whose
``nodeRegistration.taints`` is unset gets kubeadm's control-plane NoSchedule taint.

``wait-control-plane`` checks this node's kube-apiserver, kube-controller-manager and kube-scheduler
health endpoints (from its manifests) until they answer, bounded by
``timeouts.controlPlaneComponentHealthCheck``: init's waiter without its kubelet check and without the
cluster-admins binding (both belong to the first node), as kubeadm's join does.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from kubeboot.config import constants as c
from kubeboot.tasks.phases.context import ControlContext
from kubeboot.tasks.phases.joincluster import ensure_cluster
from kubeboot.tasks.phases.joincontext import JoinNodeContext
from kubeboot.tasks.phases.markcontrolplane import run_mark_control_plane as mark
from kubeboot.tasks.phases.waitcp import ATTEMPT_WINDOW, Waiter, WaitState


def run_mark_control_plane(ctx: ControlContext) -> None:
    mark(ctx)


def run_wait_control_plane(ctx: JoinNodeContext, *, window: float = ATTEMPT_WINDOW) -> None:
    if not ctx.join.is_control_plane:
        return
    ensure_cluster(ctx)
    if ctx.join.join.dryRun:
        return
    state = WaitState.load(ctx)
    if len(state.healthy) < len(c.CONTROL_PLANE_COMPONENTS):
        Waiter(ctx, lambda: datetime.now(UTC), time.sleep, window, state).control_plane()
