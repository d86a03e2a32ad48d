"""The phase paths of ``kubeadm init`` (kubeadm-spec 2.0), as the config API knows them.

Reads: nothing. Writes: nothing. ``InitConfiguration.skipPhases`` is checked against this tuple.
``config`` is the lowest layer and cannot import the workflow tree, so the names live here too; a test
next to the workflow tree asserts that both agree.

kubeadm accepts a skipPhases entry only when it is exactly one of these paths (a parent skips its
children); ``certs/all`` is a command-line spelling, not a phase name (workflow/runner.go:
"invalid phase name").
"""

from __future__ import annotations

from typing import Final

INIT_PHASE_PATHS: Final[tuple[str, ...]] = (
    "preflight",
    "certs",
    "certs/ca",
    "certs/apiserver",
    "certs/apiserver-kubelet-client",
    "certs/front-proxy-ca",
    "certs/front-proxy-client",
    "certs/etcd-ca",
    "certs/etcd-server",
    "certs/etcd-peer",
    "certs/etcd-healthcheck-client",
    "certs/apiserver-etcd-client",
    "certs/sa",
    "kubeconfig",
    "kubeconfig/admin",
    "kubeconfig/super-admin",
    "kubeconfig/kubelet",
    "kubeconfig/controller-manager",
    "kubeconfig/scheduler",
    "etcd",
    "etcd/local",
    "control-plane",
    "control-plane/apiserver",
    "control-plane/controller-manager",
    "control-plane/scheduler",
    "kubelet-start",
    "wait-control-plane",
    "upload-config",
    "upload-config/kubeadm",
    "upload-config/kubelet",
    "upload-certs",
    "mark-control-plane",
    "bootstrap-token",
    "kubelet-finalize",
    "kubelet-finalize/enable-client-cert-rotation",
    "addon",
    "addon/coredns",
    "addon/kube-proxy",
    "show-join-command",
)

TOP_LEVEL_INIT_PHASES: Final[tuple[str, ...]] = tuple(p for p in INIT_PHASE_PATHS if "/" not in p)
