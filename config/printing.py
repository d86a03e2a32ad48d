"""What ``kubeadm config print init-defaults [--component-configs ...]`` prints, for kubeboot's defaults.

Reads: nothing. Writes: nothing; returns YAML text. kubeadm builds the output from
util/config.DefaultedStaticInitConfiguration: the v1beta4 defaults plus placeholders that pass
validation without doing real work (bootstrap token ``abcdef.0123456789abcdef``, advertiseAddress
``1.2.3.4``, node name ``node``, the containerd socket to avoid CRI detection) and the current version
as ``MAJOR.MINOR.PATCH`` without the ``v``. Documents are joined by ``---`` and keys are sorted, as
Go's JSON-then-YAML marshalling sorts them; zero values kubeadm omits (``omitempty``) are left out,
and ``taints: null`` is kept because that field has no ``omitempty``.
The output loads back with ``config.loader.load_init_config``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import yaml

from kubeboot.config import constants as c
from kubeboot.config.models import Timeouts
from kubeboot.config.resolved import nth_ip
from kubeboot.config.versions import DEFAULT_KUBERNETES_VERSION

PLACEHOLDER_TOKEN: Final = "abcdef.0123456789abcdef"
PLACEHOLDER_ADVERTISE_ADDRESS: Final = "1.2.3.4"
PLACEHOLDER_NODE_NAME: Final = "node"
COMPONENT_CONFIG_KINDS: Final = ("KubeletConfiguration", "KubeProxyConfiguration")


def init_configuration() -> dict[str, Any]:
    return {
        "apiVersion": c.V1BETA4,
        "kind": "InitConfiguration",
        "bootstrapTokens": [
            {
                "groups": [c.DEFAULT_TOKEN_GROUP],
                "token": PLACEHOLDER_TOKEN,
                "ttl": c.DEFAULT_TOKEN_TTL,
                "usages": ["signing", "authentication"],
            }
        ],
        "localAPIEndpoint": {"advertiseAddress": PLACEHOLDER_ADVERTISE_ADDRESS, "bindPort": c.APISERVER_PORT},
        "nodeRegistration": {
            "criSocket": c.DEFAULT_CRI_SOCKET,
            "imagePullPolicy": "IfNotPresent",
            "imagePullSerial": True,
            "name": PLACEHOLDER_NODE_NAME,
            "taints": None,
        },
        "timeouts": Timeouts().model_dump(),
    }


def cluster_configuration() -> dict[str, Any]:
    return {
        "apiVersion": c.V1BETA4,
        "kind": "ClusterConfiguration",
        "apiServer": {},
        "caCertificateValidityPeriod": c.DEFAULT_CA_CERT_VALIDITY,
        "certificateValidityPeriod": c.DEFAULT_CERT_VALIDITY,
        "certificatesDir": c.DEFAULT_CERTS_DIR,
        "clusterName": c.DEFAULT_CLUSTER_NAME,
        "controllerManager": {},
        "dns": {},
        "encryptionAlgorithm": c.DEFAULT_ENCRYPTION_ALGORITHM,
        "etcd": {"local": {"dataDir": c.DEFAULT_ETCD_DATA_DIR}},
        "imageRepository": c.DEFAULT_IMAGE_REPOSITORY,
        "kubernetesVersion": DEFAULT_KUBERNETES_VERSION.removeprefix("v"),
        "networking": {"dnsDomain": c.DEFAULT_DNS_DOMAIN, "serviceSubnet": c.DEFAULT_SERVICE_SUBNET},
        "proxy": {},
        "scheduler": {},
    }


def kubelet_configuration() -> dict[str, Any]:
    """The settings kubeadm's componentconfigs defaulting puts into the KubeletConfiguration."""
    return {
        "apiVersion": c.KUBELET_CONFIG_API,
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": f"{c.DEFAULT_CERTS_DIR}/ca.crt"},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "systemd",
        "clusterDNS": [nth_ip(c.DEFAULT_SERVICE_SUBNET, 10)],
        "clusterDomain": c.DEFAULT_DNS_DOMAIN,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": c.KUBELET_HEALTHZ_PORT,
        "rotateCertificates": True,
        "staticPodPath": c.MANIFESTS_DIR,
    }


def kube_proxy_configuration() -> dict[str, Any]:
    """The settings kubeadm's componentconfigs defaulting puts into the KubeProxyConfiguration."""
    return {
        "apiVersion": c.KUBEPROXY_CONFIG_API,
        "kind": "KubeProxyConfiguration",
        "bindAddress": "0.0.0.0",
        "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"},
    }


_COMPONENT_BUILDERS = {
    "KubeletConfiguration": kubelet_configuration,
    "KubeProxyConfiguration": kube_proxy_configuration,
}


def _dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=True, default_flow_style=False)


def init_defaults_yaml(component_configs: Iterable[str] = ()) -> str:
    """The multi-document YAML; ValueError naming the allowed kinds for an unknown component config."""
    docs = [init_configuration(), cluster_configuration()]
    for kind in component_configs:
        if kind not in _COMPONENT_BUILDERS:
            raise ValueError(f"{kind!r} is not a component config; use some of: {', '.join(COMPONENT_CONFIG_KINDS)}")
        docs.append(_COMPONENT_BUILDERS[kind]())
    return "---\n".join(_dump(d) for d in docs)
