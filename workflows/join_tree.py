"""The ``join`` workflow as data, in kubeadm v1.36's order (cmd/kubeadm/app/cmd/join.go).

This tree drives ``kubeboot join phase <path>``, ``--skip-phases``, the phase help and the canvas.
kubeadm runs the control-plane phases on a worker too, where they return at once; kubeboot's plan
drops them for a worker join (``plan_join``) so ``status`` shows them skipped with the reason.
``check-etcd`` is hidden in kubeadm's help and is here too (``extra["hidden"]``).

Targets: everything is node-local (the joining machine's files, kubelet and etcd member) except
``control-plane-join/mark-control-plane``, an API call the control worker makes with the admin
kubeconfig the node's ``control-plane-prepare/kubeconfig`` left, encrypted, in the run state.
"""

from __future__ import annotations

from kubeboot.workflows.init_tree import WAIT_MAX_ATTEMPTS
from kubeboot.workflows.phase import Phase

_PRE = "kubeboot.tasks.phases.joinprepare"
_KUBELET = "kubeboot.tasks.phases.joinkubelet"
_ETCD = "kubeboot.tasks.phases.joinetcd"
_CP = "kubeboot.tasks.phases.joincontrolplane"

HIDDEN = {"hidden": True}

CONTROL_PLANE_PREPARE = Phase(
    "control-plane-prepare",
    "Prepare the machine for serving a control plane",
    children=(
        Phase("download-certs", "Download certificates shared among control-plane nodes from the kubeadm-certs "
              "Secret", action=f"{_PRE}:run_download_certs"),
        Phase("certs", "Generate the certificates for the new control plane components",
              action=f"{_PRE}:run_certs"),
        Phase("kubeconfig", "Generate the kubeconfig for the new control plane components",
              action=f"{_PRE}:run_kubeconfig"),
        Phase("control-plane", "Generate the manifests for the new control plane components",
              action=f"{_PRE}:run_control_plane"),
    ),
)

CONTROL_PLANE_JOIN = Phase(
    "control-plane-join",
    "Join a machine as a control plane instance",
    target="control",
    children=(
        Phase("mark-control-plane", "Mark a node as a control-plane", target="control",
              action=f"{_CP}:run_mark_control_plane"),
    ),
)

# Only a control-plane join (--control-plane) runs these; a worker join leaves them out.
CONTROL_PLANE_ONLY = ("control-plane-prepare", "check-etcd", "etcd-join", "control-plane-join",
                      "wait-control-plane")

JOIN_PHASES: tuple[Phase, ...] = (
    Phase("preflight", "Run join pre-flight checks", action="kubeboot.tasks.phases.joinpreflight:run_preflight",
          max_attempts=WAIT_MAX_ATTEMPTS),  # discovery polls every 5 s up to timeouts.discovery
    CONTROL_PLANE_PREPARE,
    Phase("check-etcd", "Check that the etcd cluster is healthy", action=f"{_ETCD}:run_check_etcd",
          extra=HIDDEN),
    Phase("kubelet-start", "Write kubelet settings, certificates and (re)start the kubelet",
          action=f"{_KUBELET}:run_kubelet_start"),
    Phase("etcd-join", "Join etcd for control plane nodes", action=f"{_ETCD}:run_etcd_join",
          max_attempts=WAIT_MAX_ATTEMPTS),  # waits for its turn, the learner's catch-up, a healthy cluster
    Phase("kubelet-wait-bootstrap", "Wait for the kubelet to bootstrap itself",
          action=f"{_KUBELET}:run_kubelet_wait_bootstrap", max_attempts=WAIT_MAX_ATTEMPTS),
    CONTROL_PLANE_JOIN,
    Phase("wait-control-plane", "Wait for the control plane to start",
          action=f"{_CP}:run_wait_control_plane", max_attempts=WAIT_MAX_ATTEMPTS),
)
