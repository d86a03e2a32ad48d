"""The loaded configuration of one node's init, with the values every phase derives from it.

``InitConfig`` is what phases receive: the four kubeadm documents plus derived facts (node name,
advertise address, control-plane endpoint, first service IP ...) computed once, here, so no phase
re-derives them differently.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from kubeboot.config import constants as c
from kubeboot.config.duration import parse_duration
from kubeboot.config.models import ClusterConfiguration, InitConfiguration
from kubeboot.config.paths import go_clean
from kubeboot.config.versions import MinorProfile, Version, profile


def split_host_port(endpoint: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` / ``[v6]:port`` / bare IPv6 → (host, port)."""
    if endpoint.startswith("["):
        host, _, rest = endpoint[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if endpoint.count(":") == 1:
        host, port = endpoint.split(":")
        return host, int(port)
    return endpoint, default_port


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def nth_ip(cidr: str, n: int) -> str:
    net = ipaddress.ip_network(cidr.split(",", maxsplit=1)[0].strip(), strict=False)
    return str(net.network_address + n)


@dataclass(frozen=True)
class InitConfig:
    init: InitConfiguration
    cluster: ClusterConfiguration
    kubelet: dict[str, Any] = field(default_factory=dict)  # user's KubeletConfiguration document
    kubeproxy: dict[str, Any] = field(default_factory=dict)  # user's KubeProxyConfiguration document
    source: str = "<defaults>"
    warnings: tuple[str, ...] = ()  # what loading accepted but kubeadm warns about (config.loader)

    # --- identity of this node -----------------------------------------------------------------
    @property
    def node_name(self) -> str:
        return self.init.nodeRegistration.name

    @property
    def advertise_address(self) -> str:
        return self.init.localAPIEndpoint.advertiseAddress

    @property
    def bind_port(self) -> int:
        return self.init.localAPIEndpoint.bindPort

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.advertise_address

    @property
    def loopback(self) -> str:
        """The loopback address kubeadm pairs with the advertise address (127.0.0.1 or ::1)."""
        return "::1" if self.is_ipv6 else "127.0.0.1"

    # --- versions ------------------------------------------------------------------------------
    @cached_property
    def version(self) -> Version:
        return self.cluster.version

    @cached_property
    def profile(self) -> MinorProfile:
        return profile(self.version)

    # --- endpoints -----------------------------------------------------------------------------
    @property
    def local_endpoint(self) -> str:
        """``<adv>:<port>``: where this node's API server listens."""
        return join_host_port(self.advertise_address, self.bind_port)

    @property
    def control_plane_endpoint(self) -> str:
        """``host:port`` of controlPlaneEndpoint, or the local endpoint when it is unset."""
        cpe = self.cluster.controlPlaneEndpoint
        if not cpe:
            return self.local_endpoint
        host, port = split_host_port(cpe, self.bind_port)
        return join_host_port(host, port)

    @property
    def cluster_server(self) -> str:
        return f"https://{self.control_plane_endpoint}"

    @property
    def local_server(self) -> str:
        return f"https://{self.local_endpoint}"

    # --- networking ----------------------------------------------------------------------------
    @property
    def first_service_ip(self) -> str:
        return nth_ip(self.cluster.networking.serviceSubnet, 1)

    @property
    def dns_service_ip(self) -> str:
        return nth_ip(self.cluster.networking.serviceSubnet, 10)

    # --- pki -----------------------------------------------------------------------------------
    @property
    def pki_dir(self) -> str:
        """certificatesDir cleaned like Go's filepath.Clean, so ``f"{pki_dir}/ca.crt"`` is kubeadm's
        ``filepath.Join(certificatesDir, "ca.crt")`` (a trailing slash never makes ``pki//ca.crt``).
        Where kubeadm uses the field as written (the ``k8s-certs`` volume), use ``cluster.certificatesDir``."""
        return go_clean(self.cluster.certificatesDir)

    @property
    def cert_validity_seconds(self) -> float:
        return parse_duration(self.cluster.certificateValidityPeriod)

    @property
    def ca_validity_seconds(self) -> float:
        return parse_duration(self.cluster.caCertificateValidityPeriod)

    @property
    def patches_dir(self) -> str:
        return self.init.patches.directory if self.init.patches else ""

    def image(self, component: str) -> str:
        return f"{self.cluster.imageRepository}/{component}:{self.version.text}"

    @property
    def etcd_image(self) -> str:
        local = self.cluster.local_etcd
        repo = local.imageRepository or self.cluster.imageRepository
        return f"{repo}/{c.ETCD}:{local.imageTag or self.profile.etcd_version}"

    @property
    def pause_image(self) -> str:
        return f"{self.cluster.imageRepository}/pause:{self.profile.pause_version}"
