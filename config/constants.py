"""Every path, file name, object name, port and default kubeboot uses, defined once.

Paths are the absolute paths kubeadm uses on a real machine. Node phases never open them directly:
they go through ``tasks.fsutil.NodeFS``, which maps ``/etc/kubernetes/...`` under the node's root.
"""

from __future__ import annotations

from typing import Final

# --- kubeadm API -------------------------------------------------------------------------------
KUBEADM_GROUP: Final = "kubeadm.k8s.io"
V1BETA4: Final = f"{KUBEADM_GROUP}/v1beta4"
KUBEBOOT_API_VERSION: Final = "kubeboot.dev/v1alpha1"  # kubeboot's own documents: Cluster, Batch, DiscoveryFile
V1BETA3: Final = f"{KUBEADM_GROUP}/v1beta3"
KUBELET_CONFIG_API: Final = "kubelet.config.k8s.io/v1beta1"
KUBEPROXY_CONFIG_API: Final = "kubeproxy.config.k8s.io/v1alpha1"

# --- directories and files -----------------------------------------------------------------------
KUBERNETES_DIR: Final = "/etc/kubernetes"
MANIFESTS_DIR: Final = "/etc/kubernetes/manifests"
DEFAULT_CERTS_DIR: Final = "/etc/kubernetes/pki"
DEFAULT_ETCD_DATA_DIR: Final = "/var/lib/etcd"
KUBELET_DIR: Final = "/var/lib/kubelet"
KUBELET_PKI_DIR: Final = "/var/lib/kubelet/pki"
KUBELET_CONFIG_FILE: Final = "/var/lib/kubelet/config.yaml"
KUBELET_FLAGS_ENV_FILE: Final = "/var/lib/kubelet/kubeadm-flags.env"
KUBELET_INSTANCE_CONFIG_FILE: Final = "/var/lib/kubelet/instance-config.yaml"
KUBELET_CLIENT_CURRENT_PEM: Final = "/var/lib/kubelet/pki/kubelet-client-current.pem"
FLEXVOLUME_DIR: Final = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec"
CA_CERTS_DIR: Final = "/etc/ssl/certs"

ADMIN_CONF: Final = "admin.conf"
SUPER_ADMIN_CONF: Final = "super-admin.conf"
KUBELET_CONF: Final = "kubelet.conf"
CONTROLLER_MANAGER_CONF: Final = "controller-manager.conf"
SCHEDULER_CONF: Final = "scheduler.conf"
BOOTSTRAP_KUBELET_CONF: Final = "bootstrap-kubelet.conf"

# --- components --------------------------------------------------------------------------------
ETCD: Final = "etcd"
KUBE_APISERVER: Final = "kube-apiserver"
KUBE_CONTROLLER_MANAGER: Final = "kube-controller-manager"
KUBE_SCHEDULER: Final = "kube-scheduler"
KUBE_PROXY: Final = "kube-proxy"
CONTROL_PLANE_COMPONENTS: Final = (KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER)

# --- ports -------------------------------------------------------------------------------------
APISERVER_PORT: Final = 6443
KCM_PORT: Final = 10257
SCHEDULER_PORT: Final = 10259
KUBELET_PORT: Final = 10250
KUBELET_HEALTHZ_PORT: Final = 10248
ETCD_CLIENT_PORT: Final = 2379
ETCD_PEER_PORT: Final = 2380
ETCD_METRICS_PORT: Final = 2381

# --- identities --------------------------------------------------------------------------------
CLUSTER_ADMINS_GROUP: Final = "kubeadm:cluster-admins"
SYSTEM_MASTERS: Final = "system:masters"
NODES_GROUP: Final = "system:nodes"
NODE_USER_PREFIX: Final = "system:node:"
ADMIN_USER: Final = "kubernetes-admin"
SUPER_ADMIN_USER: Final = "kubernetes-super-admin"
KCM_USER: Final = "system:kube-controller-manager"
SCHEDULER_USER: Final = "system:kube-scheduler"
DEFAULT_TOKEN_GROUP: Final = "system:bootstrappers:kubeadm:default-node-token"
TLS_BOOTSTRAP_TOKEN_USER: Final = "tls-bootstrap-token-user"  # user of bootstrap-kubelet.conf (join)

# RootlessControlPlane (kubeadm constants.go, KEP-2568): the users and groups the static Pods run as.
NONROOT_ETCD_USER: Final = "kubeadm-etcd"
NONROOT_APISERVER_USER: Final = "kubeadm-kas"
NONROOT_KCM_USER: Final = "kubeadm-kcm"
NONROOT_SCHEDULER_USER: Final = "kubeadm-ks"
NONROOT_SA_KEY_READERS_GROUP: Final = "kubeadm-sa-key-readers"
ETC_PASSWD: Final = "/etc/passwd"
ETC_GROUP: Final = "/etc/group"
ETC_LOGIN_DEFS: Final = "/etc/login.defs"
FEATURE_ROOTLESS_CONTROL_PLANE: Final = "RootlessControlPlane"

# --- defaults (spec 2.16) ----------------------------------------------------------------------
DEFAULT_IMAGE_REPOSITORY: Final = "registry.k8s.io"
DEFAULT_CLUSTER_NAME: Final = "kubernetes"
DEFAULT_SERVICE_SUBNET: Final = "10.96.0.0/12"
DEFAULT_DNS_DOMAIN: Final = "cluster.local"
DEFAULT_CRI_SOCKET: Final = "unix:///var/run/containerd/containerd.sock"
DEFAULT_ENCRYPTION_ALGORITHM: Final = "RSA-2048"
DEFAULT_CERT_VALIDITY: Final = "8760h0m0s"
DEFAULT_CA_CERT_VALIDITY: Final = "87600h0m0s"
DEFAULT_TOKEN_TTL: Final = "24h0m0s"
CERTIFICATE_BACKDATE_SECONDS: Final = 5 * 60
ENCRYPTION_ALGORITHMS: Final = ("RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384")

# --- static pods -------------------------------------------------------------------------------
PRIORITY_CLASS_NODE_CRITICAL: Final = "system-node-critical"
ETCD_ADVERTISE_ANNOTATION: Final = "kubeadm.kubernetes.io/etcd.advertise-client-urls"
APISERVER_ADVERTISE_ANNOTATION: Final = (
    "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"
)
COMPONENT_CONFIG_HASH_ANNOTATION: Final = "kubeadm.kubernetes.io/component-config.hash"

# --- patches targets (spec section 4) ----------------------------------------------------------
PATCH_TARGETS: Final = (
    ETCD,
    KUBE_APISERVER,
    KUBE_CONTROLLER_MANAGER,
    KUBE_SCHEDULER,
    "kubeletconfiguration",
    "corednsdeployment",
)

# --- control-plane resources (spec 2.5) --------------------------------------------------------
CPU_REQUESTS: Final = {
    ETCD: "100m",
    KUBE_APISERVER: "250m",
    KUBE_CONTROLLER_MANAGER: "200m",
    KUBE_SCHEDULER: "100m",
}
ETCD_MEMORY_REQUEST: Final = "100Mi"

# --- preflight requirements (spec 2.1) ---------------------------------------------------------
CONTROL_PLANE_NUM_CPU: Final = 2
CONTROL_PLANE_MEM_MB: Final = 1700

# --- kubeboot's own node-local record ------------------------------------------------------------
# Written by the certs phase once the cluster CA exists: lets preflight tell "a previous kubeboot run
# of this same cluster (same CA) left these files" (resume) from "somebody else's cluster" (conflict).
KUBEBOOT_NODE_MARKER: Final = "/var/lib/kubeboot/node.json"

# --- kubeboot's own state (settings, embedded Redis, run store) ------------------------------------
SECRET_KEY_FILE: Final = "secret.key"  # under the state dir, mode 0600
# Trust material (tasks.trust), under the state dir unless KUBEBOOT_*_FILE names another place.
NODE_PINS_DIR: Final = "keys/nodes"  # under the state dir: <worker id>.pub, one per node worker
CONTROL_PUBLIC_KEY_STATE_FILE: Final = "keys/control.pub"  # under the state dir: what nodes pin
NODE_KEY_STATE_FILE: Final = "keys/node-{worker}.key"  # under the state dir, mode 0600 (KUBEBOOT_NODE_KEY_FILE)
DISPATCH_JOURNAL: Final = "dispatch/{worker}.json"  # under the state dir: the newest dispatch a node ran
EMBEDDED_REDIS_DIR: Final = "redis"  # under the state dir: config, AOF, pidfile, log, socket, lock
EMBEDDED_REDIS_SOCKET: Final = "redis.sock"
EMBEDDED_REDIS_PIDFILE: Final = "redis.pid"
EMBEDDED_REDIS_CONF: Final = "redis.conf"
EMBEDDED_REDIS_LOG: Final = "redis.log"
EMBEDDED_REDIS_LOCKFILE: Final = "start.lock"
EMBEDDED_REDIS_TCP_FILE: Final = "redis.tcp"  # port and password when the socket path is too long
STATE_KEY_PREFIX: Final = "kubeboot:"  # every Redis key kubeboot writes starts with this

# --- static Pod manifests (kubeadm phases/controlplane, util/staticpod) ------------------------------
# The CA-bundle directories kubeadm mounts into kube-apiserver and kube-controller-manager when they
# exist on the host (volumes.go caCertsExtraVolumePaths, v1.2x-v1.36; the volume name is the path with
# "/" replaced by "-", leading dash dropped).
CA_CERTS_EXTRA_DIRS: Final = (
    "/etc/pki/ca-trust",
    "/etc/pki/tls/certs",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
)
PROBE_PORT_NAME: Final = "probe-port"  # kubeadm constants.ProbePort (named port of every probe, v1.34+)
PRIORITY_NODE_CRITICAL_VALUE: Final = 2000001000  # value of system-node-critical, set explicitly (k/k#114338)
CONTROL_PLANE_TIER: Final = "control-plane"

# --- API objects of upload-config, mark-control-plane, bootstrap-token (spec 2.8, 2.10, 2.11) -------
NAMESPACE_SYSTEM: Final = "kube-system"
NAMESPACE_PUBLIC: Final = "kube-public"
KUBEADM_CONFIG_CONFIGMAP: Final = "kubeadm-config"
CLUSTER_CONFIGURATION_KEY: Final = "ClusterConfiguration"
NODES_KUBEADM_CONFIG_ROLE: Final = "kubeadm:nodes-kubeadm-config"
KUBELET_CONFIG_CONFIGMAP: Final = "kubelet-config"
KUBELET_CONFIG_KEY: Final = "kubelet"
KUBELET_CONFIG_ROLE: Final = "kubeadm:kubelet-config"
LABEL_CONTROL_PLANE: Final = "node-role.kubernetes.io/control-plane"
LABEL_EXCLUDE_FROM_LB: Final = "node.kubernetes.io/exclude-from-external-load-balancers"
BOOTSTRAP_TOKEN_SECRET_PREFIX: Final = "bootstrap-token-"
BOOTSTRAP_TOKEN_SECRET_TYPE: Final = "bootstrap.kubernetes.io/token"
BOOTSTRAPPERS_GROUP: Final = "system:bootstrappers"
DEFAULT_TOKEN_DESCRIPTION: Final = "The default bootstrap token generated by 'kubeadm init'."
GET_NODES_ROLE: Final = "kubeadm:get-nodes"
KUBELET_BOOTSTRAP_BINDING: Final = "kubeadm:kubelet-bootstrap"
NODE_BOOTSTRAPPER_ROLE: Final = "system:node-bootstrapper"
NODE_AUTOAPPROVE_BOOTSTRAP_BINDING: Final = "kubeadm:node-autoapprove-bootstrap"
NODE_CLIENT_APPROVAL_ROLE: Final = "system:certificates.k8s.io:certificatesigningrequests:nodeclient"
NODE_AUTOAPPROVE_ROTATION_BINDING: Final = "kubeadm:node-autoapprove-certificate-rotation"
NODE_SELF_CLIENT_APPROVAL_ROLE: Final = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"
APISERVER_KUBELET_CLIENT_BINDING: Final = "kubeadm:apiserver-kubelet-client"
KUBELET_API_ADMIN_ROLE: Final = "system:kubelet-api-admin"
APISERVER_KUBELET_CLIENT_USER: Final = "kube-apiserver-kubelet-client"
CLUSTER_INFO_CONFIGMAP: Final = "cluster-info"
CLUSTER_INFO_KUBECONFIG_KEY: Final = "kubeconfig"
CLUSTER_INFO_ROLE: Final = "kubeadm:bootstrap-signer-clusterinfo"
ANONYMOUS_USER: Final = "system:anonymous"
# Run secrets (ctx.secrets) shared between phases and with the CLI.
SECRET_BOOTSTRAP_TOKEN: Final = "bootstrap-token.{index}"
SECRET_CERTIFICATE_KEY: Final = "certificate-key"
SECRET_JOIN_COMMAND: Final = "join-command"
# "1" when systemd-resolved is active on the init node (kubelet-start knows; upload-config/kubelet needs it).
SECRET_SYSTEMD_RESOLVED: Final = "kubelet-start.systemd-resolved"
