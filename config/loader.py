"""Reading kubeadm's multi-document YAML into an ``InitConfig``.

Reads: one file. Writes: nothing. Every problem becomes a ``ConfigError`` naming file, document
(``kind``), field path and what is wrong, so the CLI can print one line and exit 2.

Like kubeadm's config loading, some input is accepted with a warning (the warning lines are kept in
``InitConfig.warnings`` and logged on the ``kubeboot.config`` logger, which kubeadm prints as klog
warnings on stderr): a ``criSocket`` without URL scheme gets ``unix://`` prepended
(SetNodeRegistrationDynamicDefaults), and unknown fields of the component configurations are dropped
(``config.componentconfigs``).
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubeboot.config import constants as c
from kubeboot.config.errors import ConfigError, field_path
from kubeboot.config.models import ClusterConfiguration, InitConfiguration, NodeRegistration
from kubeboot.config.resolved import InitConfig
from kubeboot.config.validation import validate_init_config

KNOWN_KINDS = {
    "InitConfiguration",
    "ClusterConfiguration",
    "KubeletConfiguration",
    "KubeProxyConfiguration",
}


def _pydantic_error(err: ValidationError, file: str, kind: str) -> ConfigError:
    first = err.errors()[0]
    msg = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif isinstance(first.get("input"), str | int | float | bool) and str(first.get("input")) not in msg:
        msg = f"{msg} (got {first.get('input')!r})"
    return ConfigError(msg, file=file, document=kind, field=field_path(tuple(first["loc"])))


def _read_documents(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file: {e.strerror}", file=str(path)) from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{line}invalid YAML: {problem}", file=str(path)) from None
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise ConfigError("a document must be a mapping", file=str(path), document=f"document {i + 1}")
    return docs


_KUBEADM_KINDS = {"InitConfiguration", "ClusterConfiguration"}
# documentMapToInitConfiguration's error for a file without either kubeadm document
NO_KUBEADM_KIND = "no InitConfiguration or ClusterConfiguration kind was found in the YAML file"
CRI_SCHEME = "unix"
log = logging.getLogger("kubeboot.config")


def _check_api_version(doc: dict[str, Any], kind: str, file: str) -> None:
    """kubeadm documents must be v1beta4 or v1beta3; component configs are checked in validation."""
    api = doc.get("apiVersion")
    if kind in _KUBEADM_KINDS and api not in (c.V1BETA4, c.V1BETA3):
        raise ConfigError(
            f"unsupported apiVersion {api!r}; expected {c.V1BETA4} (or {c.V1BETA3}, converted)",
            file=file,
            document=kind,
            field="apiVersion",
        )


def _split_kinds(docs: list[dict[str, Any]], file: str) -> dict[str, dict[str, Any]]:
    from kubeboot.config.v1beta3 import convert_documents  # small; only needed for old documents

    by_kind: dict[str, dict[str, Any]] = {}
    for i, doc in enumerate(docs):
        kind = doc.get("kind")
        label = f"document {i + 1}"
        if not kind or not isinstance(kind, str):
            raise ConfigError("missing 'kind' (a string such as InitConfiguration)", file=file, document=label,
                              field="kind")
        if kind not in KNOWN_KINDS:
            raise ConfigError(
                f"unknown kind {kind!r}; expected one of {', '.join(sorted(KNOWN_KINDS))}",
                file=file,
                document=label,
                field="kind",
            )
        if kind in by_kind:
            raise ConfigError(f"{kind} appears twice; give each kind once", file=file, document=kind, field="kind")
        _check_api_version(doc, kind, file)
        by_kind[kind] = doc
    return convert_documents(by_kind, file)


def default_node_name() -> str:
    return socket.gethostname().lower()


def default_advertise_address() -> str:
    """The address of the default-route interface, as kubeadm picks it; loopback if there is none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # UDP connect sends nothing; it only picks a route
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def cri_socket_scheme(nr: NodeRegistration, warnings: list[str]) -> None:
    """SetNodeRegistrationDynamicDefaults (init's and join's): a socket not starting with "unix" gets
    "unix://", with kubeadm's warning. (A socket with another URL scheme stays as written, for
    validation to refuse.)"""
    if nr.criSocket and not nr.criSocket.startswith(CRI_SCHEME) and "://" not in nr.criSocket:
        warnings.append(
            "Usage of CRI endpoints without URL scheme is deprecated and can cause kubelet errors in the future. "
            f'Automatically prepending scheme "{CRI_SCHEME}" to the "criSocket" with value "{nr.criSocket}". '
            "Please update your configuration!"
        )
        nr.criSocket = f"{CRI_SCHEME}://{nr.criSocket}"


def _fill_node_defaults(init: InitConfiguration, file: str) -> None:
    nr, ep = init.nodeRegistration, init.localAPIEndpoint
    if not nr.name:
        hostname = default_node_name()
        try:
            nr.name = hostname
        except ValidationError as e:
            msg = str(e.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"the default node name is this machine's hostname, which is not valid ({msg}); "
                              "set nodeRegistration.name", file=file, document="InitConfiguration",
                              field="nodeRegistration.name") from None
    if not ep.advertiseAddress:
        ep.advertiseAddress = default_advertise_address()


def build_init_config(
    docs: list[dict[str, Any]], file: str = "<defaults>", *, fill_node_defaults: bool = True,
    require_kubeadm_kind: bool = False,
) -> InitConfig:
    """The validated config of ``docs``; ``require_kubeadm_kind`` refuses documents without an
    InitConfiguration or ClusterConfiguration, as kubeadm refuses such a file."""
    from kubeboot.config.componentconfigs import checked_component_configs

    by_kind = _split_kinds(docs, file)
    if require_kubeadm_kind and not _KUBEADM_KINDS & by_kind.keys():
        raise ConfigError(NO_KUBEADM_KIND, file=file)
    try:
        init = InitConfiguration.model_validate(by_kind.get("InitConfiguration", {}))
    except ValidationError as e:
        raise _pydantic_error(e, file, "InitConfiguration") from None
    try:
        cluster = ClusterConfiguration.model_validate(by_kind.get("ClusterConfiguration", {}))
    except ValidationError as e:
        raise _pydantic_error(e, file, "ClusterConfiguration") from None
    if cluster.etcd.local is None and cluster.etcd.external is None:
        cluster = cluster.model_copy(update={"etcd": type(cluster.etcd)(local=type(cluster.local_etcd)())})
    warnings: list[str] = []
    cri_socket_scheme(init.nodeRegistration, warnings)
    if fill_node_defaults:
        _fill_node_defaults(init, file)
    kubelet, kubeproxy = checked_component_configs(by_kind, file, warnings)
    cfg = InitConfig(init=init, cluster=cluster, kubelet=kubelet, kubeproxy=kubeproxy, source=file,
                     warnings=tuple(warnings))
    validate_init_config(cfg)
    for line in cfg.warnings:
        log.warning("%s", line)
    return cfg


def load_init_config(path: str | Path, *, fill_node_defaults: bool = True) -> InitConfig:
    """Load and validate a kubeadm config file; ``ConfigError`` on any problem."""
    p = Path(path)
    return build_init_config(_read_documents(p), str(p), fill_node_defaults=fill_node_defaults,
                             require_kubeadm_kind=True)
