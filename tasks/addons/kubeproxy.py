"""The kube-proxy addon's objects as kubeadm's proxy/manifests.go and proxy.go produce them (v1.34-v1.36).

Reads: ``cfg`` (controlPlaneEndpoint or the local API endpoint, podSubnet, the advertise address's family,
imageRepository, kubernetesVersion, the user's KubeProxyConfiguration document ``cfg.kubeproxy``) and the
proxy variables of an environment (``*_proxy``, copied into the DaemonSet like kubeadm's
GetProxyEnvVars). Writes nothing.

Objects: ConfigMap ``kube-proxy`` (``kubeconfig.conf`` and ``config.conf``, signed with the component-config
hash unless the user supplied the KubeProxyConfiguration), DaemonSet ``kube-proxy``, ServiceAccount
``kube-proxy``, ClusterRoleBinding ``kubeadm:node-proxier``, Role and RoleBinding ``kube-proxy``.
The templates are the same in v1.34-v1.36 (the ``kubeproxydaemonset`` patch target comes with v1.37).

``config.conf`` is kubeadm's KubeProxyConfiguration struct marshalled whole: every field of
kubeproxy.config.k8s.io/v1alpha1 that is not ``omitempty`` appears with its Go zero value, the user's
values laid over them, then componentconfigs/kubeproxy.go ``Default``: ``bindAddress`` 0.0.0.0 (``::``
for an IPv6 advertise address), ``clusterCIDR`` = podSubnet, ``clientConnection.kubeconfig``
/var/lib/kube-proxy/kubeconfig.conf — each only when unset. Scheme defaults (iptables.syncPeriod ...) are
not applied: kube-proxy applies them when it reads the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

from kubeboot.config import constants as c
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import goyaml
from kubeboot.tasks.kubeletconfig import deep_merge
from kubeboot.tasks.manifests import merge_env, proxy_env

Obj = dict[str, Any]

NAMESPACE: Final = "kube-system"
NAME: Final = "kube-proxy"  # ServiceAccount, ConfigMap, DaemonSet, Role, RoleBinding
CONFIG_KEY: Final = "config.conf"  # kubeadm KubeProxyConfigMapKey
KUBECONFIG_KEY: Final = "kubeconfig.conf"
CRB_NAME: Final = "kubeadm:node-proxier"  # KubeProxyClusterRoleBindingName
CLUSTER_ROLE: Final = "system:node-proxier"  # KubeProxyClusterRoleName
KUBECONFIG_PATH: Final = "/var/lib/kube-proxy/kubeconfig.conf"
SA_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
RBAC_API: Final = "rbac.authorization.k8s.io/v1"
RBAC_GROUP: Final = "rbac.authorization.k8s.io"

# The KubeProxyConfiguration fields that are not omitempty, with their zero values (featureGates and
# windowsRunAsService are omitempty; logging's structs are never empty for encoding/json).
_ZERO_VALUES: Final[Obj] = {
    "bindAddress": "",
    "bindAddressHardFail": False,
    "clientConnection": {"acceptContentTypes": "", "burst": 0, "contentType": "", "kubeconfig": "", "qps": 0},
    "clusterCIDR": "",
    "configSyncPeriod": "0s",
    "conntrack": {"maxPerCore": None, "min": None, "tcpBeLiberal": False, "tcpCloseWaitTimeout": None,
                  "tcpEstablishedTimeout": None, "udpStreamTimeout": "0s", "udpTimeout": "0s"},
    "detectLocal": {"bridgeInterface": "", "interfaceNamePrefix": ""},
    "detectLocalMode": "",
    "enableProfiling": False,
    "healthzBindAddress": "",
    "hostnameOverride": "",
    "iptables": {"localhostNodePorts": None, "masqueradeAll": False, "masqueradeBit": None,
                 "minSyncPeriod": "0s", "syncPeriod": "0s"},
    "ipvs": {"excludeCIDRs": None, "minSyncPeriod": "0s", "scheduler": "", "strictARP": False,
             "syncPeriod": "0s", "tcpFinTimeout": "0s", "tcpTimeout": "0s", "udpTimeout": "0s"},
    "logging": {"flushFrequency": 0, "options": {"json": {"infoBufferSize": "0"}, "text": {"infoBufferSize": "0"}},
                "verbosity": 0},
    "metricsBindAddress": "",
    "mode": "",
    "nftables": {"masqueradeAll": False, "masqueradeBit": None, "minSyncPeriod": "0s", "syncPeriod": "0s"},
    "nodePortAddresses": None,
    "oomScoreAdj": None,
    "portRange": "",
    "showHiddenMetricsForVersion": "",
    "winkernel": {"enableDSR": False, "forwardHealthCheckVip": False, "networkName": "",
                  "rootHnsEndpointName": "", "sourceVip": ""},
}


def _unset(doc: Obj, key: str) -> bool:
    return doc.get(key) in (None, "")


def proxy_config(cfg: InitConfig) -> Obj:
    """The KubeProxyConfiguration kubeadm stores (see the module docstring)."""
    user = {k: v for k, v in cfg.kubeproxy.items() if k not in ("apiVersion", "kind")}
    doc = deep_merge(_ZERO_VALUES, user)
    doc["apiVersion"] = c.KUBEPROXY_CONFIG_API
    doc["kind"] = "KubeProxyConfiguration"
    if _unset(doc, "bindAddress"):
        doc["bindAddress"] = "::" if cfg.is_ipv6 else "0.0.0.0"
    pod_subnet = cfg.cluster.networking.podSubnet
    if _unset(doc, "clusterCIDR") and pod_subnet:
        doc["clusterCIDR"] = pod_subnet
    if _unset(doc["clientConnection"], "kubeconfig"):
        doc["clientConnection"]["kubeconfig"] = KUBECONFIG_PATH
    if not doc.get("featureGates"):
        doc.pop("featureGates", None)  # kubeadm sets an empty map; omitempty drops it
    return doc


def config_conf(cfg: InitConfig) -> str:
    """``config.conf``: the YAML, without the final newline (the template's ``|-`` block strips it)."""
    return goyaml.dump(proxy_config(cfg)).rstrip("\n")


def kubeconfig_conf(cfg: InitConfig) -> str:
    """``kubeconfig.conf``: the template's fixed kubeconfig, the server being the control-plane endpoint."""
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- cluster:\n"
        f"    certificate-authority: {SA_DIR}/ca.crt\n"
        f"    server: {cfg.cluster_server}\n"
        "  name: default\n"
        "contexts:\n"
        "- context:\n"
        "    cluster: default\n"
        "    namespace: default\n"
        "    user: default\n"
        "  name: default\n"
        "current-context: default\n"
        "users:\n"
        "- name: default\n"
        "  user:\n"
        f"    tokenFile: {SA_DIR}/token"
    )


def config_hash(data: Mapping[str, str]) -> str:
    """componentconfigs.ChecksumForConfigMap: sha256 over the data values in key order."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(data[key].encode())
    return f"sha256:{digest.hexdigest()}"


def config_map(cfg: InitConfig) -> Obj:
    data = {KUBECONFIG_KEY: kubeconfig_conf(cfg), CONFIG_KEY: config_conf(cfg)}
    meta: Obj = {"name": NAME, "namespace": NAMESPACE, "labels": {"app": NAME}}
    if not cfg.kubeproxy:  # kubeadm signs only the config it generated (IsUserSupplied)
        meta["annotations"] = {c.COMPONENT_CONFIG_HASH_ANNOTATION: config_hash(data)}
    return {"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta, "data": data}


def daemon_set(cfg: InitConfig, environ: Mapping[str, str]) -> Obj:
    env: list[Obj] = [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    env += merge_env(proxy_env(environ))  # MergeKubeadmEnvVars: by name, sorted
    container = {
        "name": NAME,
        "image": cfg.image(c.KUBE_PROXY),
        "imagePullPolicy": "IfNotPresent",
        "command": ["/usr/local/bin/kube-proxy", f"--config=/var/lib/kube-proxy/{CONFIG_KEY}",
                    "--hostname-override=$(NODE_NAME)"],
        "securityContext": {"privileged": True},
        "volumeMounts": [
            {"mountPath": "/var/lib/kube-proxy", "name": "kube-proxy"},
            {"mountPath": "/run/xtables.lock", "name": "xtables-lock", "readOnly": False},
            {"mountPath": "/lib/modules", "name": "lib-modules", "readOnly": True},
        ],
        "env": env,
    }
    labels = {"k8s-app": NAME}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"labels": dict(labels), "name": NAME, "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "priorityClassName": c.PRIORITY_CLASS_NODE_CRITICAL,
                    "containers": [container],
                    "hostNetwork": True,
                    "serviceAccountName": NAME,
                    "volumes": [
                        {"name": "kube-proxy", "configMap": {"name": NAME}},
                        {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                        {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                    ],
                    "tolerations": [{"operator": "Exists"}],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                },
            },
        },
    }


def service_account() -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": NAMESPACE}}


def cluster_role_binding() -> Obj:
    return {
        "apiVersion": RBAC_API, "kind": "ClusterRoleBinding", "metadata": {"name": CRB_NAME},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": CLUSTER_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
    }


def role() -> Obj:
    return {
        "apiVersion": RBAC_API, "kind": "Role", "metadata": {"name": NAME, "namespace": NAMESPACE},
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": [NAME]}],
    }


def role_binding() -> Obj:
    return {
        "apiVersion": RBAC_API, "kind": "RoleBinding", "metadata": {"name": NAME, "namespace": NAMESPACE},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": NAME},
        "subjects": [{"kind": "Group", "name": c.DEFAULT_TOKEN_GROUP}],
    }
