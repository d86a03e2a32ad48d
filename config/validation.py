"""The value and cross-field rules kubeadm enforces on an init configuration.

Reads: an ``InitConfig`` whose documents already passed the pydantic models (types, enums, unknown
fields). Writes: nothing. Mirrors kubeadm's ValidateInitConfiguration / ValidateClusterConfiguration
(cmd/kubeadm/app/apis/kubeadm/validation/validation.go) in kubeadm's order; the first broken rule
becomes one ``ConfigError`` naming the document (kind), the field path (``bootstrapTokens[0].groups``)
and what is wrong and allowed.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from kubeboot.config import fieldchecks as check
from kubeboot.config.errors import ConfigError
from kubeboot.config.featuregates import known_feature_gates
from kubeboot.config.models import Arg, BootstrapToken, ClusterConfiguration, InitConfiguration, NodeRegistration
from kubeboot.config.phasenames import INIT_PHASE_PATHS
from kubeboot.config.resolved import InitConfig

Problem = tuple[str, str, str]  # (document kind, field path, message)

INIT = "InitConfiguration"
CLUSTER = "ClusterConfiguration"


def validate_init_config(cfg: InitConfig) -> None:
    """Raise ``ConfigError`` for the first rule ``cfg`` breaks."""
    for document, field, message in problems(cfg):
        raise ConfigError(message, file=cfg.source, document=document, field=field)


def problems(cfg: InitConfig) -> Iterator[Problem]:
    """Every broken rule, in kubeadm's order."""
    yield from _init_problems(cfg.init)
    yield from _cluster_problems(cfg.cluster)


# --- InitConfiguration ---------------------------------------------------------------------------


def _init_problems(init: InitConfiguration) -> Iterator[Problem]:
    yield from _node_registration(init.nodeRegistration)
    for i, token in enumerate(init.bootstrapTokens):
        yield from _bootstrap_token(token, f"bootstrapTokens[{i}]")
    if init.patches and init.patches.directory and (problem := check.node_path(init.patches.directory)):
        yield INIT, "patches.directory", problem
    for i, name in enumerate(init.skipPhases):
        if name not in INIT_PHASE_PATHS:
            yield INIT, f"skipPhases[{i}]", (
                f"unknown phase {name!r}; valid phases: {', '.join(INIT_PHASE_PATHS)}"
            )


def _node_registration(nr: NodeRegistration) -> Iterator[Problem]:
    path = "nodeRegistration"
    if problem := check.cri_socket(nr.criSocket):
        yield INIT, f"{path}.criSocket", problem
    ignored = {item.lower() for item in nr.ignorePreflightErrors}
    if "all" in ignored and len(ignored) > 1:
        yield INIT, f"{path}.ignorePreflightErrors", (
            f"don't specify individual checks if 'all' is used (got {', '.join(nr.ignorePreflightErrors)})"
        )


def _bootstrap_token(token: BootstrapToken, path: str) -> Iterator[Problem]:
    if "ttl" in token.model_fields_set and token.expires is not None:
        yield INIT, path, "the BootstrapToken ttl and expires fields are mutually exclusive"
    if token.groups and "authentication" not in token.usages:
        yield INIT, f"{path}.groups", "token groups cannot be specified unless usages includes 'authentication'"
    for j, group in enumerate(token.groups):
        if problem := check.bootstrap_group(group):
            yield INIT, f"{path}.groups[{j}]", problem
    if token.ttl.startswith("-"):
        yield INIT, f"{path}.ttl", f"{token.ttl!r} is negative; use a positive duration, or 0 for no expiry"


# --- ClusterConfiguration ------------------------------------------------------------------------


def _cluster_problems(cl: ClusterConfiguration) -> Iterator[Problem]:
    yield from _image_repository(cl.dns.imageRepository, "dns.imageRepository")
    yield from _networking(cl)
    yield from _sans(cl.apiServer.certSANs, "apiServer.certSANs")
    if problem := check.node_path(cl.certificatesDir):
        yield CLUSTER, "certificatesDir", problem
    yield from _feature_gates(cl)
    if cl.controlPlaneEndpoint and (problem := check.host_port(cl.controlPlaneEndpoint)):
        yield CLUSTER, "controlPlaneEndpoint", problem
    if problem := check.image_repository(cl.imageRepository):
        yield CLUSTER, "imageRepository", problem
    yield from _etcd(cl)


def _image_repository(value: str, path: str) -> Iterator[Problem]:
    if value and (problem := check.image_repository(value)):
        yield CLUSTER, path, problem


def _sans(sans: list[str], path: str) -> Iterator[Problem]:
    for i, san in enumerate(sans):
        if problem := check.cert_san(san):
            yield CLUSTER, f"{path}[{i}]", problem


def _last_arg(args: list[Arg], name: str) -> str | None:
    """kubeadm.GetArgValue(args, name, -1): the last occurrence wins, as on a command line."""
    values = [a.value for a in args if a.name == name]
    return values[-1] if values else None


def _networking(cl: ClusterConfiguration) -> Iterator[Problem]:
    net = cl.networking
    if net.serviceSubnet:
        problem = check.subnets(net.serviceSubnet, check.MIN_SERVICE_SUBNET_ADDRESSES)
        problem = problem or check.service_subnet_size(net.serviceSubnet)
        if problem:
            yield CLUSTER, "networking.serviceSubnet", problem
    if net.podSubnet:
        problem = check.subnets(net.podSubnet, check.MIN_POD_SUBNET_ADDRESSES)
        if not problem and _last_arg(cl.controllerManager.extraArgs, "allocate-node-cidrs") != "false":
            masks = _node_masks(cl.controllerManager.extraArgs)
            problem = masks if isinstance(masks, str) else check.pod_subnet_node_mask(net.podSubnet, masks)
        if problem:
            yield CLUSTER, "networking.podSubnet", problem


def _node_masks(args: list[Arg]) -> dict[int, int] | str:
    masks = dict(check.DEFAULT_NODE_MASK)
    for version in (4, 6):
        flag = f"node-cidr-mask-size-ipv{version}"
        value = _last_arg(args, flag)
        if value is None:
            continue
        if not value.isdigit():
            return f"could not parse the value {value!r} of the kube-controller-manager flag {flag} as an integer"
        masks[version] = int(value)
    return masks


def _feature_gates(cl: ClusterConfiguration) -> Iterator[Problem]:
    known = known_feature_gates(cl.version.minor)
    for name in sorted(cl.featureGates):
        if name not in known:
            yield CLUSTER, f"featureGates.{name}", (
                f"{name} is not a valid feature name for kubeadm v1.{cl.version.minor}; "
                f"known: {', '.join(known)}"
            )


def _etcd(cl: ClusterConfiguration) -> Iterator[Problem]:
    local, external = cl.etcd.local, cl.etcd.external
    if local is not None and external is not None:
        yield CLUSTER, "etcd", "etcd.local and etcd.external are mutually exclusive; set one of them"
        return
    if local is not None:
        if problem := check.node_path(local.dataDir):
            yield CLUSTER, "etcd.local.dataDir", problem
        yield from _sans(local.serverCertSANs, "etcd.local.serverCertSANs")
        yield from _sans(local.peerCertSANs, "etcd.local.peerCertSANs")
        yield from _image_repository(local.imageRepository, "etcd.local.imageRepository")
    if external is not None:
        yield from _external_etcd(external.endpoints, external.caFile, external.certFile, external.keyFile)


def _external_etcd(endpoints: list[str], ca: str, cert: str, key: str) -> Iterator[Problem]:
    path = "etcd.external"
    if bool(cert) != bool(key):
        yield CLUSTER, path, "either both or none of etcd.external.certFile and etcd.external.keyFile must be set"
    if cert and key and not ca:
        yield CLUSTER, path, "setting etcd.external.certFile and etcd.external.keyFile requires etcd.external.caFile"
    if not endpoints:
        yield CLUSTER, f"{path}.endpoints", "at least one etcd endpoint is required (e.g. https://10.0.0.1:2379)"
    require_https = bool(ca or cert or key)  # plain http is allowed only without any TLS file
    for i, url in enumerate(endpoints):
        scheme = urlsplit(url).scheme
        if not scheme:
            yield CLUSTER, f"{path}.endpoints[{i}]", f"{url!r}: the URL without scheme is not allowed"
        elif require_https and scheme != "https":
            yield CLUSTER, f"{path}.endpoints[{i}]", f"{url!r}: the URL must be using the HTTPS scheme"
    for name, value in (("caFile", ca), ("certFile", cert), ("keyFile", key)):
        if value and (problem := check.absolute_path(value)):
            yield CLUSTER, f"{path}.{name}", problem
