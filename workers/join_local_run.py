"""``kubeboot join phase``: the join's steps run one after another in this process, on one node root.

Kept apart from the click wiring so tests and benchmarks call the same function. Like kubeadm, no
etcd membership turn is taken in process (there is no run state to hold one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubeboot.config.join import JoinConfig

WORKER_DONE = """
This node has joined the cluster:
* Certificate signing request was sent to apiserver and a response was received.
* The Kubelet was informed of the new secure connection details.

Run 'kubectl get nodes' on the control-plane to see this node join the cluster.
"""

CONTROL_PLANE_DONE = """
This node has joined the cluster and a new control plane instance was created:

* Certificate signing request was sent to apiserver and approval was received.
* The Kubelet was informed of the new secure connection details.
* Control plane label and taint were applied to the new node.
* The Kubernetes control plane instances scaled up.
* A new etcd member was added to the local/stacked etcd cluster.

To start administering your cluster from this node, you need to run the following as a regular user:

\tmkdir -p $HOME/.kube
\tsudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config
\tsudo chown $(id -u):$(id -g) $HOME/.kube/config

Run 'kubectl get nodes' to see this node join the cluster.
"""


def done_message(*, control_plane: bool) -> str:
    """kubeadm's closing text of a successful join."""
    return CONTROL_PLANE_DONE if control_plane else WORKER_DONE


def run_join_phase(join: JoinConfig, *, path: str, root: str, skip: list[str] | None = None,
                   kubelet_driver: str = "none") -> tuple[int, str]:
    """Run ``path`` of the join against ``root``; (exit code, one-line message): 0 / 1 failed / 2 bad input."""
    import click

    from kubeboot.tasks.fsutil import NodeFS
    from kubeboot.tasks.phases.joincontext import JoinNodeContext
    from kubeboot.workers.local_run import _kubelet
    from kubeboot.workflows.join_runs import plan_join
    from kubeboot.workflows.local import PhaseFailedError, run_steps
    from kubeboot.workflows.selection import UnknownPhaseError

    try:
        steps = plan_join(join, path, skip)
    except UnknownPhaseError as e:
        return 2, str(e)
    ctx = JoinNodeContext(join.provisional_init_config(), NodeFS(root), join=join, kubelet=_kubelet(kubelet_driver))
    try:
        result = run_steps(steps, ctx)
    except PhaseFailedError as e:
        return 1, str(e)
    if path in ("all", "") and "kubelet-wait-bootstrap" in result.ran:
        click.echo(done_message(control_plane=join.is_control_plane))
    return 0, ""
