"""kubeadm's ValidateJoinConfiguration (apis/kubeadm/validation/validation.go), in kubeadm's order.

Reads: a ``JoinConfig`` whose document passed the pydantic models. Writes: nothing. The first broken
rule becomes one ``ConfigError`` naming the document, the field path and what is wrong; kubeadm's own
words where it has them ("using token-based discovery without caCertHashes can be unsafe ...").
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from kubeboot.config import fieldchecks as check
from kubeboot.config.errors import ConfigError
from kubeboot.config.join import JOIN, JOIN_PHASE_PATHS, JoinConfig, discovery_file_problem, is_token

Problem = tuple[str, str]  # (field path, message)

_HASH = re.compile(r"^(?P<format>[^:]+):(?P<value>.*)$")
UNSAFE = ("using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as "
          "true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue")
NODE_NAME_REQUIRED = ("--node-name or .nodeRegistration.name in the config file is a required value. It seems like "
                      "this value couldn't be automatically detected in your environment, please specify the "
                      "desired value using the CLI or config file.")


def validate_join(cfg: JoinConfig) -> None:
    for field, message in problems(cfg):
        raise ConfigError(message, file=cfg.source, document=JOIN, field=field)


def problems(cfg: JoinConfig) -> Iterator[Problem]:
    join = cfg.join
    yield from _node_registration(cfg)
    yield from _discovery(cfg)
    if problem := check.absolute_path(join.caCertPath):
        yield "caCertPath", problem
    if join.controlPlane is not None:
        yield from _control_plane(cfg)
    for i, name in enumerate(join.skipPhases):
        if name not in JOIN_PHASE_PATHS:
            yield f"skipPhases[{i}]", f"unknown phase {name!r}; valid phases: {', '.join(JOIN_PHASE_PATHS)}"


def _node_registration(cfg: JoinConfig) -> Iterator[Problem]:
    nr = cfg.join.nodeRegistration
    if not nr.name:
        yield "nodeRegistration.name", NODE_NAME_REQUIRED
    ignored = {item.lower() for item in nr.ignorePreflightErrors}
    if "all" in ignored and len(ignored) > 1:
        yield "nodeRegistration.ignorePreflightErrors", (
            f"don't specify individual checks if 'all' is used (got {', '.join(nr.ignorePreflightErrors)})")


def ca_cert_hash_problem(value: str) -> str | None:
    """pubkeypin.Set.Allow's rules for one ``--discovery-token-ca-cert-hash``."""
    m = _HASH.match(value)
    if m is None or ":" in m["value"]:
        return 'invalid hash, expected "format:hex-value". Known format(s) are: sha256'
    if m["format"].lower() != "sha256":
        return f'unknown hash format "{m["format"]}". Known format(s) are: sha256'
    hex_value = m["value"]
    if len(hex_value) // 2 != 32:
        return f'invalid hash "{value}", expected a 32 byte SHA-256 hash, found {len(hex_value) // 2} bytes'
    try:
        bytes.fromhex(hex_value)
    except ValueError:
        return f'invalid hash "{value}", could not decode SHA-256 from hex'
    return None


def _discovery(cfg: JoinConfig) -> Iterator[Problem]:
    d = cfg.join.discovery
    if d.bootstrapToken is None and d.file is None:
        yield "discovery", "bootstrapToken or file must be set"
        return
    if d.bootstrapToken is not None and d.file is not None:
        yield "discovery", "bootstrapToken and file cannot both be set"
        return
    if d.bootstrapToken is not None:
        b = d.bootstrapToken
        if not b.apiServerEndpoint:
            yield "discovery.bootstrapToken.apiServerEndpoint", "APIServerEndpoint is not set"
        if not b.caCertHashes and not b.unsafeSkipCAVerification:
            yield "discovery.bootstrapToken.caCertHashes", UNSAFE
        for i, h in enumerate(b.caCertHashes):
            if problem := ca_cert_hash_problem(h):
                yield (f"discovery.bootstrapToken.caCertHashes[{i}]",
                       f"invalid discovery token CA certificate hash: {problem}")
        if not is_token(b.token):
            yield "discovery.bootstrapToken.token", f'"{b.token}": the bootstrap token is invalid'
        if b.apiServerEndpoint and (problem := _endpoint_problem(b.apiServerEndpoint)):
            yield "discovery.bootstrapToken.apiServerEndpoint", problem
        if not is_token(d.tlsBootstrapToken):
            yield "discovery.tlsBootstrapToken", f'"{d.tlsBootstrapToken}": the bootstrap token is invalid'
        return
    assert d.file is not None
    path = d.file.kubeConfigPath
    # A run carries the file's text (config.join_discovery): the path is of the machine that submitted it.
    here = cfg.discovery_kubeconfig is not None or (bool(path) and os.path.exists(path))
    if problem := discovery_file_problem(path, here):
        yield "discovery.file.kubeConfigPath", f'"{path}": {problem}'
    if d.tlsBootstrapToken and not is_token(d.tlsBootstrapToken):
        yield "discovery.tlsBootstrapToken", f'"{d.tlsBootstrapToken}": the bootstrap token is invalid'


def _endpoint_problem(endpoint: str) -> str | None:
    """Go's net.SplitHostPort (a port is required), then kubeboot's host check."""
    has_port = "]:" in endpoint if endpoint.startswith("[") else endpoint.count(":") == 1
    if not has_port:
        return f"address {endpoint}: missing port in address"
    return check.host_port(endpoint)


def _control_plane(cfg: JoinConfig) -> Iterator[Problem]:
    cp = cfg.join.controlPlane
    assert cp is not None
    key = cp.certificateKey
    if key and not re.fullmatch(r"[0-9a-fA-F]{64}", key):
        yield "controlPlane.certificateKey", "the certificate key must be 64 hex characters (a 32-byte AES key)"
