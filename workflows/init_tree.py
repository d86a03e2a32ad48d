"""The ``init`` workflow as data, in kubeadm's order (kubeadm-spec 2.0).

This tree drives ``kubeboot init phase <path>``, ``--skip-phases``, the phase help and the canvas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubeboot.workflows.phase import Phase

if TYPE_CHECKING:
    from kubeboot.config.resolved import InitConfig


def _local_etcd(cfg: InitConfig) -> bool:
    return not cfg.cluster.is_external_etcd


_EXT = "external etcd is configured"

_CERTS = "kubeboot.tasks.phases.certs"


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

_KCFG = "kubeboot.tasks.phases.kubeconfig"


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
              action="kubeboot.tasks.phases.etcd:run_etcd_local", condition=_local_etcd, skip_reason=_EXT),
    ),
)

_CP = "kubeboot.tasks.phases.controlplane"
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

def _dns_enabled(cfg: InitConfig) -> bool:
    return not cfg.cluster.dns.disabled


def _proxy_enabled(cfg: InitConfig) -> bool:
    return not cfg.cluster.proxy.disabled


_UC = "kubeboot.tasks.phases.uploadconfig"
_ADD = "kubeboot.tasks.phases.addons"

UPLOAD_CONFIG = Phase(
    "upload-config",
    "Upload the kubeadm and kubelet configuration to a ConfigMap",
    target="control",
    children=(
        Phase("kubeadm", "Upload the kubeadm ClusterConfiguration to a ConfigMap", target="control",
              action=f"{_UC}:run_upload_config_kubeadm"),
        Phase("kubelet", "Upload the kubelet component config to a ConfigMap", target="control",
              action=f"{_UC}:run_upload_config_kubelet"),
    ),
)

ADDON = Phase(
    "addon",
    "Install required addons for passing conformance tests",
    target="control",
    children=(
        Phase("coredns", "Install the CoreDNS addon to a Kubernetes cluster", target="control",
              action=f"{_ADD}:run_addon_coredns", condition=_dns_enabled, skip_reason="dns.disabled is true"),
        Phase("kube-proxy", "Install the kube-proxy addon to a Kubernetes cluster", target="control",
              action=f"{_ADD}:run_addon_kube_proxy", condition=_proxy_enabled,
              skip_reason="proxy.disabled is true"),
    ),
)

# wait-control-plane ends by its own deadlines (timeouts.kubeletHealthCheck and
# controlPlaneComponentHealthCheck, 4m each by default); attempts of at most a few seconds each.
WAIT_MAX_ATTEMPTS = 1000

# The phases a control-plane node runs on its own, before any control plane answers: what
# `kubeboot init phase local` runs (the files of a control-plane node and its kubelet started).
LOCAL_PHASES = ("preflight", "certs", "kubeconfig", "etcd", "control-plane", "kubelet-start")
# Everything after them needs a running control plane.
AFTER_LOCAL = ("wait-control-plane", "upload-config", "upload-certs", "mark-control-plane", "bootstrap-token",
               "kubelet-finalize", "addon", "show-join-command")

# Dropped unless the run asks for it (kubeadm: "[upload-certs] Skipping phase. Please see --upload-certs").
UPLOAD_CERTS = "upload-certs"

INIT_PHASES: tuple[Phase, ...] = (
    Phase("preflight", "Run pre-flight checks", action="kubeboot.tasks.phases.preflight:run_preflight"),
    CERTS,
    KUBECONFIG,
    ETCD,
    CONTROL_PLANE,
    Phase("kubelet-start", "Write kubelet settings and (re)start the kubelet",
          action="kubeboot.tasks.phases.kubeletstart:run_kubelet_start"),
    Phase("wait-control-plane", "Wait for the control plane to start",
          action="kubeboot.tasks.phases.waitcp:run_wait_control_plane", max_attempts=WAIT_MAX_ATTEMPTS),
    UPLOAD_CONFIG,
    Phase(UPLOAD_CERTS, "Upload certificates to kubeadm-certs",
          action="kubeboot.tasks.phases.uploadcerts:run_upload_certs"),
    Phase("mark-control-plane", "Mark a node as a control-plane", target="control",
          action="kubeboot.tasks.phases.markcontrolplane:run_mark_control_plane"),
    Phase("bootstrap-token", "Generates bootstrap tokens used to join a node to a cluster", target="control",
          action="kubeboot.tasks.phases.bootstraptoken:run_bootstrap_token"),
    Phase("kubelet-finalize", "Updates settings relevant to the kubelet after TLS bootstrap",
          children=(
              Phase("enable-client-cert-rotation", "Enable kubelet client certificate rotation",
                    action="kubeboot.tasks.phases.kubeletfinalize:run_kubelet_finalize"),
          )),
    ADDON,
    Phase("show-join-command", "Show the join command for control-plane and worker node", target="control",
          action="kubeboot.tasks.phases.showjoin:run_show_join_command"),
)
