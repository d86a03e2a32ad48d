"""The CoreDNS addon's objects as kubeadm's dns/manifests.go templates produce them (v1.34-v1.36).

Reads: ``cfg`` (networking.serviceSubnet / dnsDomain, imageRepository, dns.imageRepository / imageTag,
the minor's CoreDNS version) and, for ``patch_deployment``, the patches directory. Writes nothing.

The six objects — ServiceAccount, ClusterRole and ClusterRoleBinding ``system:coredns``, ConfigMap
``coredns`` (the Corefile), Deployment ``coredns``, Service ``kube-dns`` — are the same in v1.34, v1.35
and v1.36: the templates did not change across these minors (the Corefile's ``cache`` block with
``disable success|denial <dnsDomain>`` is there since v1.32, k/k#128359); only the CoreDNS image tag
follows the minor (``MinorProfile.coredns_version``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import patches, smp
from kubeboot.tasks.errors import PermanentError

Obj = dict[str, Any]

NAMESPACE: Final = "kube-system"
NAME: Final = "coredns"  # ServiceAccount, ConfigMap, Deployment (kubeadm CoreDNSDeploymentName)
SERVICE_NAME: Final = "kube-dns"
ROLE_NAME: Final = "system:coredns"
APP_LABEL: Final = {"k8s-app": "kube-dns"}
REPLICAS: Final = 2  # kubeadm coreDNSReplicas; an existing Deployment's count is kept (deployedDNSReplicas)
CONTROL_PLANE_TAINT: Final = "node-role.kubernetes.io/control-plane"  # LabelNodeRoleControlPlane
DEFAULT_REGISTRY: Final = "registry.k8s.io"
PATCH_TARGET: Final = "corednsdeployment"
RBAC_API: Final = "rbac.authorization.k8s.io/v1"
RBAC_GROUP: Final = "rbac.authorization.k8s.io"

# Strategic merge metadata of apps/v1 Deployment: the pod template is a corev1 PodTemplateSpec.
DEPLOYMENT_SMP: Final[dict[str, Any]] = {
    "metadata": smp.POD["metadata"],
    "spec": {"template": {"metadata": smp.POD["metadata"], "spec": smp.POD["spec"]}},
    "status": {"conditions": smp.MergeList("type")},
}


def image(cfg: InitConfig) -> str:
    """images.GetDNSImage: the DNS repository (or the cluster's), ``/coredns`` appended only for the
    default registry (where the image is ``registry.k8s.io/coredns/coredns``), the minor's tag unless
    ``dns.imageTag`` overrides it."""
    dns = cfg.cluster.dns
    repo = dns.imageRepository or cfg.cluster.imageRepository
    if repo == DEFAULT_REGISTRY:
        repo = f"{repo}/coredns"
    return f"{repo}/coredns:{dns.imageTag or cfg.profile.coredns_version}"


def service_account() -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": NAMESPACE}}


def cluster_role() -> Obj:
    return {
        "apiVersion": RBAC_API, "kind": "ClusterRole", "metadata": {"name": ROLE_NAME},
        "rules": [
            {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
             "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ],
    }


def cluster_role_binding() -> Obj:
    return {
        "apiVersion": RBAC_API, "kind": "ClusterRoleBinding", "metadata": {"name": ROLE_NAME},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": ROLE_NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
    }


def corefile(dns_domain: str) -> str:
    """The Corefile text, byte for byte (the template's ``|`` block keeps one final newline)."""
    cache = "    cache 30\n"
    if dns_domain:
        cache = ("    cache 30 {\n"
                 f"       disable success {dns_domain}\n"
                 f"       disable denial {dns_domain}\n"
                 "    }\n")
    return (
        ".:53 {\n"
        "    errors\n"
        "    health {\n"
        "       lameduck 5s\n"
        "    }\n"
        "    ready\n"
        f"    kubernetes {dns_domain} in-addr.arpa ip6.arpa {{\n"
        "       pods insecure\n"
        "       fallthrough in-addr.arpa ip6.arpa\n"
        "       ttl 30\n"
        "    }\n"
        "    prometheus :9153\n"
        "    forward . /etc/resolv.conf {\n"
        "       max_concurrent 1000\n"
        "    }\n"
        f"{cache}"
        "    loop\n"
        "    reload\n"
        "    loadbalance\n"
        "}\n"
    )


_DOMAIN_SLOT = "\x00domain\x00"


def is_default_corefile(text: str) -> bool:
    """Whether ``text`` is kubeadm's own Corefile for some cluster domain (whitespace aside).

    kubeadm asks corefile-migration's ``migration.Default`` and overwrites a default Corefile but keeps
    one a person edited. kubeboot compares with the Corefile of its own minors, the domain being any
    single token used consistently: an edited Corefile is kept, kubeadm's own is refreshed.
    """
    want = corefile(_DOMAIN_SLOT).split()
    have = text.split()
    if len(want) != len(have):
        return False
    domains = {h for w, h in zip(want, have, strict=True) if w == _DOMAIN_SLOT}
    plain = all(w == h for w, h in zip(want, have, strict=True) if w != _DOMAIN_SLOT)
    return plain and len(domains) == 1 and "{" not in next(iter(domains))


def config_map(cfg: InitConfig) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": NAMESPACE},
            "data": {"Corefile": corefile(cfg.cluster.networking.dnsDomain)}}


def _container(cfg: InitConfig) -> Obj:
    def http_probe(path: str, port: str) -> Obj:
        return {"httpGet": {"path": path, "port": port, "scheme": "HTTP"}}

    return {
        "name": "coredns",
        "image": image(cfg),
        "imagePullPolicy": "IfNotPresent",
        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
        "args": ["-conf", "/etc/coredns/Corefile"],
        "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": True}],
        "ports": [
            {"containerPort": 53, "name": "dns", "protocol": "UDP"},
            {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
            {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
            {"containerPort": 8080, "name": "liveness-probe", "protocol": "TCP"},
            {"containerPort": 8181, "name": "readiness-probe", "protocol": "TCP"},
        ],
        "livenessProbe": {**http_probe("/health", "liveness-probe"), "initialDelaySeconds": 60,
                          "timeoutSeconds": 5, "successThreshold": 1, "failureThreshold": 5},
        "readinessProbe": http_probe("/ready", "readiness-probe"),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }


def deployment(cfg: InitConfig, replicas: int = REPLICAS) -> Obj:
    anti_affinity = {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {
            "labelSelector": {"matchExpressions": [{"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]},
            "topologyKey": "kubernetes.io/hostname",
        },
    }]}
    pod_spec = {
        "priorityClassName": "system-cluster-critical",
        "serviceAccountName": NAME,
        "affinity": {"podAntiAffinity": anti_affinity},
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": CONTROL_PLANE_TAINT, "effect": "NoSchedule"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "containers": [_container(cfg)],
        "dnsPolicy": "Default",
        "volumes": [{"name": "config-volume",
                     "configMap": {"name": NAME, "items": [{"key": "Corefile", "path": "Corefile"}]}}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(APP_LABEL)},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "selector": {"matchLabels": dict(APP_LABEL)},
            "template": {"metadata": {"labels": dict(APP_LABEL)}, "spec": pod_spec},
        },
    }


def service(cfg: InitConfig) -> Obj:
    def port(name: str, number: int, protocol: str) -> Obj:
        return {"name": name, "port": number, "protocol": protocol, "targetPort": number}

    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "labels": {**APP_LABEL, "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
            "name": SERVICE_NAME, "namespace": NAMESPACE,
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
            # In the template so that kubeadm's Update of an existing Service is unconditional.
            "resourceVersion": "0",
        },
        "spec": {
            "clusterIP": cfg.dns_service_ip,
            "ports": [port("dns", 53, "UDP"), port("dns-tcp", 53, "TCP"), port("metrics", 9153, "TCP")],
            "selector": dict(APP_LABEL),
        },
    }


def patch_deployment(obj: Obj, patches_dir: Path, out: Callable[[str], None]) -> Obj:
    """kubeadm applyCoreDNSDeploymentPatches: every ``corednsdeployment`` patch, in file order, with the
    Deployment's strategic merge metadata (containers by name, env by name, ports by containerPort ...)."""
    doc: Any = copy.deepcopy(obj)
    for ps in patches.read_patch_sets(patches_dir, out):
        if ps.target != PATCH_TARGET:
            continue
        for patch in ps.patches:
            try:
                if ps.patch_type == patches.STRATEGIC_PATCH:
                    doc = smp.strategic_merge(doc, patch, DEPLOYMENT_SMP)
                else:
                    doc = patches.apply_one(ps.patch_type, doc, patch, PATCH_TARGET)
            except (patches.PatchError, smp.SMPError, TypeError, KeyError, IndexError, ValueError) as e:
                raise PermanentError(
                    "could not apply patches to the CoreDNS Deployment: could not apply the following patch "
                    f'of type "{ps.patch_type}" to target "{PATCH_TARGET}":\n'
                    f"{json.dumps(patch, sort_keys=True, separators=(',', ':'))}\n: {e}") from e
            out(f'[patches] Applied patch of type "{ps.patch_type}" to target "{PATCH_TARGET}"')
    if not isinstance(doc, dict):
        raise PermanentError(f'patching target "{PATCH_TARGET}" produced a {type(doc).__name__}, not an object')
    return doc

