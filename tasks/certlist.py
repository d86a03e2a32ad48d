"""The certificates of ``kubeadm init`` as data (kubeadm-spec 2.2; kubeadm's phases/certs/certlist.go).

Reads: the ``InitConfig`` only. Writes: nothing. Each row names a certificate the way kubeadm does
(phase leaf ``name``, file ``base_name`` under the pki directory, signing ``ca``) and carries the
static parts of its ``CertSpec``; the parts that depend on the configuration (SANs, the etcd CN,
the version-dependent O of apiserver-kubelet-client, validity) are small mutator functions applied
in order by ``CertRow.spec``, exactly like kubeadm's ``configMutators``.

The table is ordered: every CA comes before the leaves it signs (``kubeadm init phase certs`` runs the
rows in this order). With external etcd the etcd CA and the certificates it signs are dropped
(kubeadm's ``GetCertsWithoutEtcd``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from kubeboot.config import constants as c
from kubeboot.config.resolved import InitConfig, is_ip, split_host_port
from kubeboot.tasks.pki import CLIENT_AUTH, SERVER_AUTH, CertSpec

Mutator = Callable[[InitConfig, CertSpec], CertSpec]

# kubeadm's validation.IsDNS1123Subdomain / IsWildcardDNS1123Subdomain, used to sort certSANs.
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123 = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_WILDCARD = re.compile(rf"^\*\.{_LABEL}(\.{_LABEL})*$")


@dataclass(frozen=True)
class CertRow:
    name: str  # phase leaf name: certs/<name>
    base_name: str  # <pki>/<base_name>.crt / .key
    long_name: str  # kubeadm's LongName, used in the phase help
    ux_name: str  # kubeadm's name in external-CA messages ("API server", "etcd peer" ...)
    ca: str | None  # name of the signing CA row; None for a self-signed CA
    common_name: str = ""
    usages: tuple[x509.ObjectIdentifier, ...] = ()
    mutators: tuple[Mutator, ...] = ()

    @property
    def is_ca(self) -> bool:
        return self.ca is None

    def spec(self, cfg: InitConfig) -> CertSpec:
        """What this certificate must say for ``cfg``."""
        validity = cfg.ca_validity_seconds if self.is_ca else cfg.cert_validity_seconds
        spec = CertSpec(self.common_name, usages=self.usages, is_ca=self.is_ca, validity_seconds=validity)
        for mutate in self.mutators:
            spec = mutate(cfg, spec)
        return spec


# --- SANs (kubeadm's pkiutil.GetAPIServerAltNames / GetEtcdAltNames / appendSANsToAltNames) ----------


def split_sans(values: list[str]) -> tuple[list[str], list[str], list[str]]:
    """User SANs sorted into (DNS names, IPs, rejected) the way appendSANsToAltNames does."""
    dns: list[str] = []
    ips: list[str] = []
    rejected: list[str] = []
    for v in values:
        if is_ip(v):
            ips.append(str(ipaddress.ip_address(v)))
        elif len(v) <= 253 and (_DNS1123.match(v) or _WILDCARD.match(v)):
            dns.append(v)
        else:
            rejected.append(v)
    return dns, ips, rejected


def _apiserver_sans(cfg: InitConfig, spec: CertSpec) -> CertSpec:
    domain = cfg.cluster.networking.dnsDomain
    dns = [cfg.node_name, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           f"kubernetes.default.svc.{domain}"]
    ips = [cfg.first_service_ip, cfg.advertise_address]
    if cfg.cluster.controlPlaneEndpoint:
        host, _ = split_host_port(cfg.cluster.controlPlaneEndpoint, cfg.bind_port)
        (ips if is_ip(host) else dns).append(host)
    extra_dns, extra_ips, _ = split_sans(cfg.cluster.apiServer.certSANs)
    return dataclasses.replace(spec, dns_names=(*dns, *extra_dns), ips=(*ips, *extra_ips))


def _etcd_sans(user_sans: Callable[[InitConfig], list[str]]) -> Mutator:
    def mutate(cfg: InitConfig, spec: CertSpec) -> CertSpec:
        extra_dns, extra_ips, _ = split_sans(user_sans(cfg))
        return dataclasses.replace(
            spec,
            dns_names=(cfg.node_name, "localhost", *extra_dns),
            ips=(cfg.advertise_address, "127.0.0.1", "::1", *extra_ips),
        )

    return mutate


def _server_cert_sans(cfg: InitConfig) -> list[str]:
    return [] if cfg.cluster.is_external_etcd else cfg.cluster.local_etcd.serverCertSANs


def _peer_cert_sans(cfg: InitConfig) -> list[str]:
    return [] if cfg.cluster.is_external_etcd else cfg.cluster.local_etcd.peerCertSANs


def _cn_is_node_name(cfg: InitConfig, spec: CertSpec) -> CertSpec:
    return dataclasses.replace(spec, common_name=cfg.node_name)


def _kubelet_client_org(cfg: InitConfig, spec: CertSpec) -> CertSpec:
    # v1.29-v1.35: O=kubeadm:cluster-admins; v1.36: no O, RBAC through a ClusterRoleBinding instead.
    org = (c.CLUSTER_ADMINS_GROUP,) if cfg.profile.apiserver_kubelet_client_has_org else ()
    return dataclasses.replace(spec, organization=org)


# --- the table ------------------------------------------------------------------------------------

CERTS: tuple[CertRow, ...] = (
    CertRow("ca", "ca", "self-signed Kubernetes CA to provision identities for other Kubernetes components",
            "CA", None, "kubernetes"),
    CertRow("apiserver", "apiserver", "certificate for serving the Kubernetes API", "API server", "ca",
            "kube-apiserver", (SERVER_AUTH,), (_apiserver_sans,)),
    CertRow("apiserver-kubelet-client", "apiserver-kubelet-client",
            "certificate for the API server to connect to kubelet", "API server kubelet client", "ca",
            "kube-apiserver-kubelet-client", (CLIENT_AUTH,), (_kubelet_client_org,)),
    CertRow("front-proxy-ca", "front-proxy-ca", "self-signed CA to provision identities for front proxy",
            "front-proxy CA", None, "front-proxy-ca"),
    CertRow("front-proxy-client", "front-proxy-client", "certificate for the front proxy client",
            "front-proxy client", "front-proxy-ca", "front-proxy-client", (CLIENT_AUTH,)),
    CertRow("etcd-ca", "etcd/ca", "self-signed CA to provision identities for etcd", "etcd CA", None, "etcd-ca"),
    # etcd wants ClientAuth on its serving certificates too (etcd-io/etcd#9785).
    CertRow("etcd-server", "etcd/server", "certificate for serving etcd", "etcd server", "etcd-ca", "",
            (SERVER_AUTH, CLIENT_AUTH), (_etcd_sans(_server_cert_sans), _cn_is_node_name)),
    CertRow("etcd-peer", "etcd/peer", "certificate for etcd nodes to communicate with each other", "etcd peer",
            "etcd-ca", "", (SERVER_AUTH, CLIENT_AUTH), (_etcd_sans(_peer_cert_sans), _cn_is_node_name)),
    CertRow("etcd-healthcheck-client", "etcd/healthcheck-client",
            "certificate for liveness probes to healthcheck etcd", "etcd health-check client", "etcd-ca",
            "kube-etcd-healthcheck-client", (CLIENT_AUTH,)),
    CertRow("apiserver-etcd-client", "apiserver-etcd-client", "certificate the apiserver uses to access etcd",
            "apiserver etcd client", "etcd-ca", "kube-apiserver-etcd-client", (CLIENT_AUTH,)),
)

_BY_NAME = {r.name: r for r in CERTS}
ETCD_CA = "etcd-ca"

# The configuration field each row's user SANs come from, for "not added to the SAN" warnings.
_USER_SANS: dict[str, Callable[[InitConfig], list[str]]] = {
    "apiserver": lambda cfg: cfg.cluster.apiServer.certSANs,
    "etcd-server": _server_cert_sans,
    "etcd-peer": _peer_cert_sans,
}


def row(name: str) -> CertRow:
    """The row of phase leaf ``name``; KeyError names the known rows."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown certificate {name!r}; one of: {', '.join(_BY_NAME)}") from None


def uses_etcd_ca(r: CertRow) -> bool:
    return ETCD_CA in (r.name, r.ca)


def cert_table(cfg: InitConfig) -> tuple[CertRow, ...]:
    """The rows ``cfg`` needs: all of them, or without the etcd ones when etcd is external."""
    if cfg.cluster.is_external_etcd:
        return tuple(r for r in CERTS if not uses_etcd_ca(r))
    return CERTS


def leaves_of(cfg: InitConfig, ca_name: str) -> tuple[CertRow, ...]:
    return tuple(r for r in cert_table(cfg) if r.ca == ca_name)


def rejected_sans(cfg: InitConfig, name: str) -> list[str]:
    """User SANs of row ``name`` that are neither an IP nor an RFC 1123 (wildcard) DNS name."""
    getter = _USER_SANS.get(name)
    return split_sans(getter(cfg))[2] if getter else []
