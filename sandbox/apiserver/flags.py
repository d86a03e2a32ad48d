"""The kube-apiserver command line of the generated static Pod manifest, as the emulated server reads it.

Reads: ``argv`` (``--name=value`` items, the form kubeadm writes; ``--name value`` and bare boolean
``--name`` are accepted too). Writes nothing. Flags the emulation does not use are kept in ``extra``
(a real kube-apiserver has hundreds); repeated flags keep every value in order (``--service-account-issuer``
may be given several times, the first one is used to issue, all are accepted).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

DEFAULT_SERVICE_RANGE = "10.0.0.0/24"  # kube-apiserver's default --service-cluster-ip-range
LEGACY_SA_ISSUER = "kubernetes/serviceaccount"


class FlagError(ValueError):
    pass


@dataclass
class ApiServerFlags:
    advertise_address: str = "127.0.0.1"
    secure_port: int = 6443
    tls_cert_file: str = ""
    tls_private_key_file: str = ""
    client_ca_file: str = ""
    enable_bootstrap_token_auth: bool = False
    anonymous_auth: bool = True
    service_account_key_files: list[str] = field(default_factory=list)
    service_account_signing_key_file: str = ""
    service_account_issuers: list[str] = field(default_factory=list)
    service_cluster_ip_range: str = DEFAULT_SERVICE_RANGE
    authorization_modes: list[str] = field(default_factory=lambda: ["AlwaysAllow"])
    etcd_servers: list[str] = field(default_factory=list)
    etcd_prefix: str = "/registry"
    etcd_cafile: str = ""
    etcd_certfile: str = ""
    etcd_keyfile: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)

    @property
    def service_network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        # Dual-stack ranges ("10.96.0.0/12,fd00::/108"): the emulation allocates from the first.
        return ipaddress.ip_network(self.service_cluster_ip_range.split(",")[0], strict=False)

    @property
    def issuers(self) -> list[str]:
        return [*self.service_account_issuers, LEGACY_SA_ISSUER]


def split_args(argv: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        item = argv[i]
        if not item.startswith("--"):
            raise FlagError(f"unexpected argument {item!r}: flags are --name=value")
        name, eq, value = item[2:].partition("=")
        if not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and not nxt.startswith("--"):
                value, i = nxt, i + 1
            else:
                value = "true"
        pairs.append((name, value))
        i += 1
    return pairs


def _bool(name: str, value: str) -> bool:
    if value.lower() in ("true", "1", "t"):
        return True
    if value.lower() in ("false", "0", "f"):
        return False
    raise FlagError(f'invalid argument "{value}" for "--{name}" flag: strconv.ParseBool: parsing "{value}"')


def parse(argv: list[str]) -> ApiServerFlags:
    f = ApiServerFlags()
    for name, value in split_args(argv):
        if name == "advertise-address":
            f.advertise_address = value
        elif name == "secure-port":
            try:
                f.secure_port = int(value)
            except ValueError:
                raise FlagError(f'invalid argument "{value}" for "--secure-port" flag') from None
        elif name in ("tls-cert-file", "tls-private-key-file", "client-ca-file",
                      "service-account-signing-key-file", "service-cluster-ip-range", "etcd-prefix",
                      "etcd-cafile", "etcd-certfile", "etcd-keyfile"):
            setattr(f, name.replace("-", "_"), value)
        elif name in ("enable-bootstrap-token-auth", "anonymous-auth"):
            setattr(f, name.replace("-", "_"), _bool(name, value))
        elif name == "service-account-key-file":
            f.service_account_key_files.append(value)
        elif name == "service-account-issuer":
            f.service_account_issuers.append(value)
        elif name == "authorization-mode":
            f.authorization_modes = [m.strip() for m in value.split(",") if m.strip()]
        elif name == "etcd-servers":
            f.etcd_servers = [s for s in value.split(",") if s]
        else:
            f.extra.setdefault(name, []).append(value)
    _check(f)
    return f


def _check(f: ApiServerFlags) -> None:
    try:
        ipaddress.ip_address(f.advertise_address)
        _ = f.service_network
    except ValueError as e:
        raise FlagError(str(e)) from None
    if bool(f.tls_cert_file) != bool(f.tls_private_key_file):
        raise FlagError("--tls-cert-file and --tls-private-key-file must be given together")
    if not f.etcd_servers:
        raise FlagError("--etcd-servers must be specified")  # kube-apiserver's own check
    if not f.etcd_prefix.startswith("/"):
        f.etcd_prefix = "/" + f.etcd_prefix
