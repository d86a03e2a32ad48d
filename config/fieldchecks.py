"""Single-value checks behind kubeadm's config validation (validation/validation.go and util).

Reads: nothing. Writes: nothing. Every function takes one value and returns ``None`` when it is valid,
or a one-line message saying what is wrong and what is allowed. ``config.validation`` applies them
to fields and turns messages into ``ConfigError``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import urlsplit

from kubeboot.config.paths import climbs

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# constants.go: the DNS service is the 10th address; anything bigger than /12 (v4) or /108 (v6) would
# make the apiserver's allocation bitmap too large; the pod subnet must hold at least a /28.
MIN_SERVICE_SUBNET_ADDRESSES: Final = 10
MAX_SERVICE_SUBNET_HOST_BITS: Final = 20
MIN_POD_SUBNET_ADDRESSES: Final = 14
POD_SUBNET_NODE_MASK_MAX_DIFF: Final = 16
DEFAULT_NODE_MASK: Final = {4: 24, 6: 64}  # kube-controller-manager --node-cidr-mask-size-ipv4/6

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_WILDCARD_SUBDOMAIN = re.compile(rf"^\*\.{_DNS_LABEL}(\.{_DNS_LABEL})*$")
# k8s.io/cluster-bootstrap/token/util: BootstrapGroupPattern
_BOOTSTRAP_GROUP = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")
# github.com/distribution/reference, applied to "<repository>/name:tag" as kubeadm does
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REFERENCE = re.compile(rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*:[\w][\w.-]{{0,127}}$")


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.match(value))


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def dns_subdomain(value: str) -> str | None:
    if is_dns1123_subdomain(value):
        return None
    return (
        f"{value!r} is not a valid DNS subdomain: lowercase letters, digits, '-' and '.', "
        "starting and ending with a letter or digit, at most 253 characters"
    )


def ip_address(value: str) -> str | None:
    return None if is_ip(value) else f"{value!r} is not a valid IP address"


def cert_san(value: str) -> str | None:
    """apiServer.certSANs / etcd *CertSANs: a DNS name, a wildcard DNS name or an IP address."""
    if is_dns1123_subdomain(value) or (len(value) <= 253 and _WILDCARD_SUBDOMAIN.match(value)) or is_ip(value):
        return None
    return f"{value!r} is not a valid IP address, DNS name or wildcard DNS name (*.example.com)"


def absolute_path(value: str) -> str | None:
    return None if value.startswith("/") else f"{value!r} is not an absolute path"


def node_path(value: str) -> str | None:
    """A directory kubeboot writes under the node root (``--root``): absolute and without ``..``.

    kubeadm only asks for an absolute path; kubeboot joins the path under a root, where ``..`` could
    climb out of it (``/etc/kubernetes/../../../tmp`` under ``/srv/node1`` is ``/tmp``), so it refuses it.
    """
    if problem := absolute_path(value):
        return problem
    if climbs(value):
        return f"{value!r} must not contain '..': kubeboot writes under the node root (--root) and '..' could leave it"
    return None


def cri_socket(value: str) -> str | None:
    """ValidateSocketPath, after the loaders prepended "unix://" to a socket without scheme. kubeadm
    prepends it to a socket with another scheme too ("unix://npipe://..."), which only fails later in
    the kubelet; kubeboot refuses such a socket here instead."""
    if not value:
        return "empty CRI socket; expected e.g. unix:///var/run/containerd/containerd.sock"
    scheme = urlsplit(value).scheme
    if scheme != "unix":
        return f'Invalid value: "{value}": only URL scheme "unix" is supported, got "{scheme}"'
    return None


# apimachinery validation.IsDNS1123Subdomain, as kubeadm's ValidateNodeRegistration reports it
DNS1123_SUBDOMAIN_MESSAGE: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def node_name(value: str) -> str | None:
    """kubeadm's nodeRegistration.name rule: a DNS-1123 subdomain of at most 253 characters."""
    if len(value) > 253:
        return f'Invalid value: "{value}": must be no more than 253 characters'
    if not _DNS1123_SUBDOMAIN.match(value):
        return f'Invalid value: "{value}": {DNS1123_SUBDOMAIN_MESSAGE}'
    return None


def port(value: str) -> str | None:
    if value.isdigit() and 1 <= int(value) <= 65535:
        return None
    return f"port {value!r} must be a number between 1 and 65535"


def _split_host_port(endpoint: str) -> tuple[str, str]:
    """Go's net.SplitHostPort, falling back to "all host" where it fails (as ParseHostPort does)."""
    if endpoint.startswith("["):
        inner, sep, rest = endpoint[1:].partition("]")
        if sep and rest.startswith(":") and ":" not in rest[1:]:
            return inner, rest[1:]
        return endpoint, ""
    if endpoint.count(":") == 1:
        host, port_text = endpoint.split(":")
        return host, port_text
    return endpoint, ""


def host_port(endpoint: str) -> str | None:
    """kubeadmutil.ParseHostPort: ``host[:port]``, host an IP or a DNS subdomain, ``[v6]:port`` for IPv6."""
    host, port_text = _split_host_port(endpoint)
    bad_port = port(port_text) if port_text else None
    if bad_port:
        return f"endpoint {endpoint!r} is not valid: {bad_port}"
    if is_ip(host) or is_dns1123_subdomain(host):
        return None
    return f"endpoint {endpoint!r} is not valid: host {host!r} must be an IP address or a DNS subdomain"


def image_repository(value: str) -> str | None:
    if _IMAGE_REFERENCE.match(f"{value}/name:tag"):
        return None
    return f"{value!r} is not a valid image repository (expected e.g. registry.k8s.io or my.registry:5000/k8s)"


def bootstrap_group(value: str) -> str | None:
    if _BOOTSTRAP_GROUP.match(value):
        return None
    return f"bootstrap token group {value!r} must match {_BOOTSTRAP_GROUP.pattern}"


def parse_cidrs(text: str) -> list[IPNetwork] | str:
    """``netutils.ParseCIDRs(strings.Split(text, ","))``: the networks, or a message."""
    nets: list[IPNetwork] = []
    for part in text.split(","):
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            return f"couldn't parse subnet {text!r}: {part!r} is not a CIDR (expected e.g. 10.96.0.0/12)"
    return nets


def subnets(text: str, min_addresses: int) -> str | None:
    """validation.ValidateIPNetFromString: one CIDR, or two of different families, each big enough."""
    nets = parse_cidrs(text)
    if isinstance(nets, str):
        return nets
    if len(nets) > 2 or (len(nets) == 2 and nets[0].version == nets[1].version):
        return (
            f"{text!r}: expected one (IPv4 or IPv6) CIDR or two CIDRs from each family for dual-stack networking"
        )
    for net in nets:
        if net.num_addresses < min_addresses:
            return f"subnet {net} with {net.num_addresses} address(es) is too small, the minimum is {min_addresses}"
    return None


def service_subnet_size(text: str) -> str | None:
    """validation.ValidateServiceSubnetSize (same rule as the apiserver)."""
    nets = parse_cidrs(text)
    for net in [] if isinstance(nets, str) else nets:
        if net.max_prefixlen - net.prefixlen > MAX_SERVICE_SUBNET_HOST_BITS:
            return (
                f"service subnet {net} is too large; for {net.max_prefixlen}-bit addresses, the mask must be "
                f">= {net.max_prefixlen - MAX_SERVICE_SUBNET_HOST_BITS}"
            )
    return None


def pod_subnet_node_mask(text: str, node_masks: dict[int, int]) -> str | None:
    """validation.ValidatePodSubnetNodeMask: each node's range must fit, at most 2^16 node ranges."""
    nets = parse_cidrs(text)
    for net in [] if isinstance(nets, str) else nets:
        node_mask = node_masks[net.version]
        if net.prefixlen > node_mask:
            return (
                f"the size of pod subnet {net} with mask {net.prefixlen} is smaller than the size of node "
                f"subnet with mask {node_mask}"
            )
        if node_mask - net.prefixlen > POD_SUBNET_NODE_MASK_MAX_DIFF:
            return (
                f"pod subnet {net} mask ({net.prefixlen}) and node-mask ({node_mask}) difference is greater "
                f"than {POD_SUBNET_NODE_MASK_MAX_DIFF}"
            )
    return None
