"""The sandbox kubelet reads kubeadm-flags.env as a kubelet started by kubeadm's systemd drop-in would."""

from __future__ import annotations

from pathlib import Path

from kubeboot.sandbox.kubelet import kubeletflags as kf


def write_env(root: Path, text: str) -> None:
    path = root / "var/lib/kubelet/kubeadm-flags.env"
    path.parent.mkdir(parents=True)
    path.write_text(text)


def test_labels_and_taints_come_from_the_quoted_args(tmp_path: Path) -> None:
    write_env(tmp_path, 'KUBELET_KUBEADM_ARGS="--hostname-override=w1 --node-labels=tier=batch,zone= '
                        '--register-with-taints=dedicated=batch:NoSchedule,gpu:NoExecute"\n')
    args = kf.kubeadm_args(tmp_path)
    assert args["hostname-override"] == "w1"
    assert kf.node_labels(args) == {"tier": "batch", "zone": ""}
    assert kf.register_taints(args) == [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"},
                                        {"key": "gpu", "effect": "NoExecute"}]


def test_no_env_file_means_no_labels_and_no_taints(tmp_path: Path) -> None:
    args = kf.kubeadm_args(tmp_path)
    assert args == {}
    assert kf.node_labels(args) == {} and kf.register_taints(args) == []
