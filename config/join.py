"""kubeadm's ``JoinConfiguration`` (``kubeadm.k8s.io/v1beta4``, v1beta3 converted) and its loading.

Reads: one YAML file (``load_join_config``) or documents already parsed (``build_join_config``, the run
state). Writes: nothing. Every problem becomes one ``ConfigError`` naming file, document, field and
what is wrong, in the order of kubeadm's ValidateJoinConfiguration (apis/kubeadm/validation).

Defaults are kubeadm's (v1beta4 defaults.go): ``caCertPath`` ``/etc/kubernetes/pki/ca.crt``,
``discovery.tlsBootstrapToken`` = the discovery token when unset, ``controlPlane.localAPIEndpoint.bindPort``
6443, ``timeouts`` as for init. ``nodeRegistration.taints`` left unset means "no taints" on a worker and
kubeadm's control-plane NoSchedule taint on a control-plane node (SetJoinDynamicDefaults).

v1beta3 conversion (kubeadm v1beta3/conversion.go): ``nodeRegistration.kubeletExtraArgs`` map → name/value
list, ``discovery.timeout`` → ``timeouts.discovery``; ``dryRun``, ``timeouts`` and
``nodeRegistration.imagePullSerial`` are v1beta4 fields, unknown in v1beta3.

``JoinConfig.init_config(cluster, kubelet)`` is kubeadm's fetchInitConfigurationFromJoinConfiguration:
the cluster's ClusterConfiguration (read from ``kubeadm-config`` after discovery) with this node's
registration and API endpoint, so the init phases' helpers (certificates, manifests, kubelet files)
serve the join unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator

from kubeboot.config import constants as c
from kubeboot.config.errors import ConfigError
from kubeboot.config.models import (
    TOKEN_RE,
    APIEndpoint,
    ClusterConfiguration,
    InitConfiguration,
    Model,
    NodeRegistration,
    Patches,
    Timeouts,
)
from kubeboot.config.resolved import InitConfig

JOIN = "JoinConfiguration"
DEFAULT_CA_CERT_PATH: Final = f"{c.DEFAULT_CERTS_DIR}/ca.crt"

# kubeadm v1.36 `kubeadm join` phases (cmd/join.go), as skipPhases accepts them; a test next to the
# workflow tree asserts both agree (config cannot import workflows).
JOIN_PHASE_PATHS: Final[tuple[str, ...]] = (
    "preflight",
    "control-plane-prepare",
    "control-plane-prepare/download-certs",
    "control-plane-prepare/certs",
    "control-plane-prepare/kubeconfig",
    "control-plane-prepare/control-plane",
    "check-etcd",
    "kubelet-start",
    "etcd-join",
    "kubelet-wait-bootstrap",
    "control-plane-join",
    "control-plane-join/mark-control-plane",
    "wait-control-plane",
)


class BootstrapTokenDiscovery(Model):
    token: str = ""
    apiServerEndpoint: str = ""
    caCertHashes: list[str] = Field(default_factory=list)
    unsafeSkipCAVerification: bool = False


class FileDiscovery(Model):
    kubeConfigPath: str = ""


class Discovery(Model):
    bootstrapToken: BootstrapTokenDiscovery | None = None
    file: FileDiscovery | None = None
    tlsBootstrapToken: str = ""


class JoinControlPlane(Model):
    localAPIEndpoint: APIEndpoint = Field(default_factory=APIEndpoint)
    certificateKey: str = ""


class JoinConfiguration(Model):
    apiVersion: str = c.V1BETA4
    kind: str = JOIN
    dryRun: bool = False
    nodeRegistration: NodeRegistration = Field(default_factory=NodeRegistration)
    caCertPath: str = DEFAULT_CA_CERT_PATH
    discovery: Discovery = Field(default_factory=Discovery)
    controlPlane: JoinControlPlane | None = None
    skipPhases: list[str] = Field(default_factory=list)
    patches: Patches | None = None
    timeouts: Timeouts = Field(default_factory=Timeouts)

    @field_validator("apiVersion")
    @classmethod
    def _api(cls, v: str) -> str:
        if v != c.V1BETA4:
            raise ValueError(f"unsupported apiVersion {v!r}; expected {c.V1BETA4} (or {c.V1BETA3}, converted)")
        return v


@dataclass(frozen=True)
class JoinConfig:
    """A validated JoinConfiguration and what the join phases derive from it."""

    join: JoinConfiguration
    source: str = "<flags>"
    # A local discovery file's kubeconfig, read where the JoinConfig was first built and carried in the run
    # (``config.join_discovery``); None for token discovery or an https URL (the node fetches it).
    discovery_kubeconfig: str | None = None

    @property
    def node_name(self) -> str:
        return self.join.nodeRegistration.name

    @property
    def is_control_plane(self) -> bool:
        return self.join.controlPlane is not None

    @property
    def certificate_key(self) -> str:
        return self.join.controlPlane.certificateKey if self.join.controlPlane else ""

    @property
    def token_discovery(self) -> BootstrapTokenDiscovery | None:
        return self.join.discovery.bootstrapToken

    @property
    def endpoint(self) -> str:
        """The API server discovery talks to (token discovery), "" for file discovery."""
        td = self.token_discovery
        return td.apiServerEndpoint if td else ""

    @property
    def tls_bootstrap_token(self) -> str:
        return self.join.discovery.tlsBootstrapToken

    def local_endpoint(self) -> APIEndpoint:
        return self.join.controlPlane.localAPIEndpoint if self.join.controlPlane else APIEndpoint()

    def init_config(self, cluster: ClusterConfiguration, kubelet: dict[str, Any] | None = None) -> InitConfig:
        """The cluster's configuration with this node's registration (kubeadm's initCfg of a join)."""
        init = InitConfiguration(
            bootstrapTokens=[], dryRun=self.join.dryRun,
            nodeRegistration=self.join.nodeRegistration.model_copy(deep=True),
            localAPIEndpoint=self.local_endpoint().model_copy(deep=True),
            patches=self.join.patches, timeouts=self.join.timeouts,
        )
        return InitConfig(init=init, cluster=cluster, kubelet=dict(kubelet or {}), source=self.source)

    def provisional_init_config(self) -> InitConfig:
        """Before discovery: kubeadm's default ClusterConfiguration stands in for the cluster's."""
        return self.init_config(ClusterConfiguration())


# --- v1beta3 ---------------------------------------------------------------------------------------

_V1BETA4_ONLY = ("dryRun", "timeouts")


def convert_v1beta3(doc: dict[str, Any], file: str) -> dict[str, Any]:
    """A v1beta3 JoinConfiguration as v1beta4 (kubeadm's conversion)."""
    from kubeboot.config.v1beta3 import args_from_map

    out = copy.deepcopy(doc)
    nr = out.get("nodeRegistration")
    for key in _V1BETA4_ONLY:
        if key in out:
            raise ConfigError(f"unknown field in {c.V1BETA3}: it is new in {c.V1BETA4}; set apiVersion: "
                              f"{c.V1BETA4} to use it", file=file, document=JOIN, field=key)
    if isinstance(nr, dict):
        if "imagePullSerial" in nr:
            raise ConfigError(f"unknown field in {c.V1BETA3}: it is new in {c.V1BETA4}", file=file, document=JOIN,
                              field="nodeRegistration.imagePullSerial")
        if nr.get("kubeletExtraArgs") is not None:
            nr["kubeletExtraArgs"] = args_from_map(nr["kubeletExtraArgs"], file=file, kind=JOIN,
                                                   field="nodeRegistration.kubeletExtraArgs")
    discovery = out.get("discovery")
    if isinstance(discovery, dict) and "timeout" in discovery:
        out["timeouts"] = {"discovery": str(discovery.pop("timeout"))}
    out["apiVersion"] = c.V1BETA4
    return out


# --- loading ----------------------------------------------------------------------------------------

_IGNORED_KINDS = {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration", "KubeProxyConfiguration",
                  "ResetConfiguration", "UpgradeConfiguration"}


def _join_document(docs: list[dict[str, Any]], file: str) -> dict[str, Any]:
    """documentMapToJoinConfiguration: the JoinConfiguration; kubeadm's other kinds are not for join."""
    found: dict[str, Any] | None = None
    for i, doc in enumerate(docs):
        kind = doc.get("kind")
        if kind == JOIN:
            if found is not None:
                raise ConfigError(f"{JOIN} appears twice; give it once", file=file, document=JOIN, field="kind")
            found = doc
        elif kind not in _IGNORED_KINDS:
            raise ConfigError(f"unknown kind {kind!r}; a join configuration is a {JOIN}", file=file,
                              document=f"document {i + 1}", field="kind")
    if found is None:
        raise ConfigError(f"no {JOIN} kind was found in the YAML file", file=file)
    api = found.get("apiVersion")
    if api == c.V1BETA3:
        return convert_v1beta3(found, file)
    if api != c.V1BETA4:
        raise ConfigError(f"unsupported apiVersion {api!r}; expected {c.V1BETA4} (or {c.V1BETA3}, converted)",
                          file=file, document=JOIN, field="apiVersion")
    return found


def _node_defaults(join: JoinConfiguration) -> None:
    """SetJoinDynamicDefaults' criSocket: a socket without scheme gets "unix://" and kubeadm's warning
    (``config.loader``, shared with init), logged on ``kubeboot.config`` as init's are."""
    import logging

    from kubeboot.config.loader import cri_socket_scheme

    warnings: list[str] = []
    cri_socket_scheme(join.nodeRegistration, warnings)
    for line in warnings:
        logging.getLogger("kubeboot.config").warning("%s", line)


def _refuse_node_problems(cfg: JoinConfig) -> None:
    """After kubeadm's rules, what kubeboot refuses for init too (``config.fieldchecks``): a CRI socket
    of another scheme, and a node path with '..' (kubeboot writes under --root; '..' could leave it)."""
    from kubeboot.config import fieldchecks as check

    join = cfg.join
    found = [("nodeRegistration.criSocket", check.cri_socket(join.nodeRegistration.criSocket)),
             ("caCertPath", check.node_path(join.caCertPath)),
             ("patches.directory", check.node_path(join.patches.directory)
              if join.patches and join.patches.directory else None)]
    for field, problem in found:
        if problem:
            raise ConfigError(problem, file=cfg.source, document=JOIN, field=field)


def build_join_config(docs: list[dict[str, Any]], file: str = "<flags>", *, run: bool = False) -> JoinConfig:
    """Parse, default and validate; ``ConfigError`` on the first problem.

    A local discovery file is read here (``config.join_discovery``), on the machine the user gives it on;
    ``run``: ``docs`` are a run's documents, which carry that file's text: no path is looked at."""
    from kubeboot.config.join_discovery import split_run_documents, with_discovery_file
    from kubeboot.config.join_validation import validate_join
    from kubeboot.config.loader import _pydantic_error

    docs, carried = split_run_documents(docs, file) if run else (docs, None)
    try:
        join = JoinConfiguration.model_validate(_join_document(docs, file))
    except ValidationError as e:
        raise _pydantic_error(e, file, JOIN) from None
    td = join.discovery.bootstrapToken
    if td is not None and not join.discovery.tlsBootstrapToken:
        join.discovery.tlsBootstrapToken = td.token  # SetDefaults_Discovery
    _node_defaults(join)
    cfg = JoinConfig(join, file, discovery_kubeconfig=carried)
    validate_join(cfg)
    _refuse_node_problems(cfg)
    return with_discovery_file(cfg)


def load_join_config(path: str | Path) -> JoinConfig:
    from kubeboot.config.loader import _read_documents

    p = Path(path)
    return build_join_config(_read_documents(p), str(p))


def is_token(text: str) -> bool:
    return bool(TOKEN_RE.match(text))


def discovery_file_problem(value: str, exists: bool) -> str | None:
    """ValidateDiscoveryKubeConfigPath: an https URL or a file that exists."""
    scheme = urlsplit(value).scheme
    if not scheme:
        return None if exists else "not a valid HTTPS URL or a file on disk"
    return None if scheme == "https" else "if a URL is used, the scheme must be https"


__all__ = ["JOIN_PHASE_PATHS", "JoinConfig", "JoinConfiguration", "build_join_config", "load_join_config"]
