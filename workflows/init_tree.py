"""The ``init`` workflow as data, in kubeadm's order (kubeadm-spec 2.0).

This tree drives ``kubeboot init phase <path>``, ``--skip-phases``, the phase help and the canvas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workflows.phase import Phase

if TYPE_CHECKING:
    from config.resolved import InitConfig


def _local_etcd(cfg: InitConfig) -> bool:
    return not cfg.cluster.is_external_etcd


_EXT = "external etcd is configured"

_CERTS = "tasks.phases.certs"


def _cert(name: str, help_: str, *, etcd: bool = False) -> Phase:
    return Phase(
        name,
        help_,
        action=f"{_CERTS}:run_cert",
        args=(name,),
        condition=_local_etcd if etcd else None,
        skip_reason=_EXT if etcd else "",
    )


CERTS = Phase(
    "certs",
    "Certificate generation",
    action=f"{_CERTS}:run_certs",
    children=(
        _cert("ca", "Generate the self-signed Kubernetes CA to provision identities for other components"),
        _cert("apiserver", "Generate the certificate for serving the Kubernetes API"),
        _cert("apiserver-kubelet-client", "Generate the certificate for the API server to connect to kubelet"),
        _cert("front-proxy-ca", "Generate the self-signed CA to provision identities for front proxy"),
        _cert("front-proxy-client", "Generate the certificate for the front proxy client"),
        _cert("etcd-ca", "Generate the self-signed CA to provision identities for etcd", etcd=True),
        _cert("etcd-server", "Generate the certificate for serving etcd", etcd=True),
        _cert("etcd-peer", "Generate the certificate for etcd nodes to communicate with each other", etcd=True),
        _cert("etcd-healthcheck-client", "Generate the certificate for liveness probes to healthcheck etcd",
              etcd=True),
        _cert("apiserver-etcd-client", "Generate the certificate the apiserver uses to access etcd", etcd=True),
        Phase("sa", "Generate a private key for signing service account tokens along with its public key",
              action=f"{_CERTS}:run_sa"),
    ),
)

_KCFG = "tasks.phases.kubeconfig"


def _kubeconfig(name: str, help_: str) -> Phase:
    return Phase(name, help_, action=f"{_KCFG}:run_kubeconfig_file", args=(name,))


KUBECONFIG = Phase(
    "kubeconfig",
    "Generate all kubeconfig files necessary to establish the control plane and the admin kubeconfig file",
    action=f"{_KCFG}:run_kubeconfig",
    children=(
        _kubeconfig("admin", "Generate a kubeconfig file for the admin to use and for kubeadm itself"),
        _kubeconfig("super-admin", "Generate a kubeconfig file for the super-admin"),
        _kubeconfig("kubelet", "Generate a kubeconfig file for the kubelet to use *only* for cluster "
                    "bootstrapping purposes"),
        _kubeconfig("controller-manager", "Generate a kubeconfig file for the controller manager to use"),
        _kubeconfig("scheduler", "Generate a kubeconfig file for the scheduler to use"),
    ),
)

ETCD = Phase(
    "etcd",
    "Generate static Pod manifest file for local etcd",
    children=(
        Phase("local", "Generate the static Pod manifest file for a local, single-node local etcd instance",
              action="tasks.phases.etcd:run_etcd_local", condition=_local_etcd, skip_reason=_EXT),
    ),
)

_CP = "tasks.phases.controlplane"
CONTROL_PLANE = Phase(
    "control-plane",
    "Generate all static Pod manifest files necessary to establish the control plane",
    action=f"{_CP}:run_control_plane_prepare",
    children=(
        Phase("apiserver", "Generates the kube-apiserver static Pod manifest",
              action=f"{_CP}:run_control_plane", args=("kube-apiserver",)),
        Phase("controller-manager", "Generates the kube-controller-manager static Pod manifest",
              action=f"{_CP}:run_control_plane", args=("kube-controller-manager",)),
        Phase("scheduler", "Generates the kube-scheduler static Pod manifest",
              action=f"{_CP}:run_control_plane", args=("kube-scheduler",)),
    ),
)

INIT_PHASES: tuple[Phase, ...] = (
    Phase("preflight", "Run pre-flight checks", action="tasks.phases.preflight:run_preflight"),
    CERTS,
    KUBECONFIG,
    ETCD,
    CONTROL_PLANE,
    Phase("kubelet-start", "Write kubelet settings and (re)start the kubelet",
          action="tasks.phases.kubeletstart:run_kubelet_start"),
)
