"""kubeadm's configuration API, ``kubeadm.k8s.io/v1beta4``, as pydantic models.

Field names are kubeadm's own camelCase names, so ``cfg.cluster.networking.serviceSubnet`` reads exactly
like the YAML a kubeadm user writes. Defaults are kubeadm's (kubeadm-spec 2.16). Unknown fields are
rejected, as ``kubeadm config validate`` rejects them. Cross-field rules that need more than one
document live in ``config.validation``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kubeboot.config import constants as c
from kubeboot.config import fieldchecks
from kubeboot.config.duration import parse_duration
from kubeboot.config.versions import DEFAULT_KUBERNETES_VERSION, Version, profile

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _duration(v: str) -> str:
    parse_duration(v)
    return v


class Arg(Model):
    """One ``extraArgs`` / ``kubeletExtraArgs`` entry (v1beta4 uses name/value lists)."""

    name: str = Field(min_length=1)
    value: str = ""


class EnvVar(Model):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)
    value: str | None = None


class HostPathMount(Model):
    name: str = Field(min_length=1)
    hostPath: str = Field(min_length=1)
    mountPath: str = Field(min_length=1)
    readOnly: bool = False
    pathType: str = ""


class ControlPlaneComponent(Model):
    extraArgs: list[Arg] = Field(default_factory=list)
    extraVolumes: list[HostPathMount] = Field(default_factory=list)
    extraEnvs: list[EnvVar] = Field(default_factory=list)


class APIServer(ControlPlaneComponent):
    certSANs: list[str] = Field(default_factory=list)


class LocalEtcd(Model):
    imageRepository: str = ""
    imageTag: str = ""
    dataDir: str = c.DEFAULT_ETCD_DATA_DIR
    extraArgs: list[Arg] = Field(default_factory=list)
    extraEnvs: list[EnvVar] = Field(default_factory=list)
    serverCertSANs: list[str] = Field(default_factory=list)
    peerCertSANs: list[str] = Field(default_factory=list)


class ExternalEtcd(Model):
    # Required, but checked in config.validation so the message can say what to write.
    endpoints: list[str] = Field(default_factory=list)
    caFile: str = ""
    certFile: str = ""
    keyFile: str = ""


class Etcd(Model):
    local: LocalEtcd | None = None
    external: ExternalEtcd | None = None


class Networking(Model):
    serviceSubnet: str = c.DEFAULT_SERVICE_SUBNET
    podSubnet: str = ""
    dnsDomain: str = c.DEFAULT_DNS_DOMAIN

    @field_validator("dnsDomain")
    @classmethod
    def _dns_domain(cls, v: str) -> str:
        if not _DNS1123_SUBDOMAIN.match(v):
            raise ValueError(f"{v!r} is not a valid DNS subdomain")
        return v


class DNS(Model):
    imageRepository: str = ""
    imageTag: str = ""
    disabled: bool = False


class Proxy(Model):
    disabled: bool = False


class ClusterConfiguration(Model):
    apiVersion: Literal["kubeadm.k8s.io/v1beta4"] = "kubeadm.k8s.io/v1beta4"
    kind: Literal["ClusterConfiguration"] = "ClusterConfiguration"
    etcd: Etcd = Field(default_factory=lambda: Etcd(local=LocalEtcd()))
    networking: Networking = Field(default_factory=Networking)
    kubernetesVersion: str = DEFAULT_KUBERNETES_VERSION
    controlPlaneEndpoint: str = ""
    apiServer: APIServer = Field(default_factory=APIServer)
    controllerManager: ControlPlaneComponent = Field(default_factory=ControlPlaneComponent)
    scheduler: ControlPlaneComponent = Field(default_factory=ControlPlaneComponent)
    dns: DNS = Field(default_factory=DNS)
    proxy: Proxy = Field(default_factory=Proxy)
    certificatesDir: str = c.DEFAULT_CERTS_DIR
    imageRepository: str = c.DEFAULT_IMAGE_REPOSITORY
    featureGates: dict[str, bool] = Field(default_factory=dict)
    clusterName: str = c.DEFAULT_CLUSTER_NAME
    encryptionAlgorithm: str = c.DEFAULT_ENCRYPTION_ALGORITHM
    certificateValidityPeriod: str = c.DEFAULT_CERT_VALIDITY
    caCertificateValidityPeriod: str = c.DEFAULT_CA_CERT_VALIDITY

    @field_validator("kubernetesVersion")
    @classmethod
    def _supported_version(cls, v: str) -> str:
        version = Version.parse(v)
        profile(version)
        return version.text

    @field_validator("encryptionAlgorithm")
    @classmethod
    def _algorithm(cls, v: str) -> str:
        if v not in c.ENCRYPTION_ALGORITHMS:
            raise ValueError(
                f"unknown encryptionAlgorithm {v!r}; one of: {', '.join(c.ENCRYPTION_ALGORITHMS)}"
            )
        return v

    @field_validator("certificateValidityPeriod", "caCertificateValidityPeriod")
    @classmethod
    def _validity(cls, v: str) -> str:
        if parse_duration(v) <= 0:
            raise ValueError(f"{v!r} must be a positive duration")
        return v

    @property
    def version(self) -> Version:
        return Version.parse(self.kubernetesVersion)

    @property
    def is_external_etcd(self) -> bool:
        return self.etcd.external is not None

    @property
    def local_etcd(self) -> LocalEtcd:
        return self.etcd.local or LocalEtcd()


class BootstrapToken(Model):
    token: str | None = None
    description: str = ""
    ttl: str = c.DEFAULT_TOKEN_TTL
    expires: str | None = None
    usages: list[str] = Field(default_factory=lambda: ["signing", "authentication"])
    groups: list[str] = Field(default_factory=lambda: [c.DEFAULT_TOKEN_GROUP])

    _ttl = field_validator("ttl")(classmethod(lambda cls, v: _duration(v)))

    @field_validator("token")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        if v is not None and not TOKEN_RE.match(v):
            raise ValueError("token must be of form '[a-z0-9]{6}.[a-z0-9]{16}'")
        return v

    @field_validator("usages")
    @classmethod
    def _usages(cls, v: list[str]) -> list[str]:
        bad = [u for u in v if u not in ("signing", "authentication")]
        if bad:
            raise ValueError(f"invalid bootstrap token usage {bad[0]!r}: valid are signing, authentication")
        return v


class Taint(Model):
    key: str = Field(min_length=1)
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    timeAdded: str | None = None


class NodeRegistration(Model):
    name: str = ""
    criSocket: str = c.DEFAULT_CRI_SOCKET
    # None means "not set": kubeadm then taints a control-plane node; [] means no taints.
    taints: list[Taint] | None = None
    kubeletExtraArgs: list[Arg] = Field(default_factory=list)
    ignorePreflightErrors: list[str] = Field(default_factory=list)
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    imagePullSerial: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v and (problem := fieldchecks.node_name(v)):
            raise ValueError(problem)
        return v


class APIEndpoint(Model):
    advertiseAddress: str = ""
    bindPort: int = Field(default=c.APISERVER_PORT, ge=0, le=65535)

    @field_validator("bindPort")
    @classmethod
    def _default_port(cls, v: int) -> int:
        # SetDefaults_APIEndpoint: 0 (Go's zero value, "not set") means the default port.
        return v or c.APISERVER_PORT

    @field_validator("advertiseAddress")
    @classmethod
    def _address(cls, v: str) -> str:
        if v:
            try:
                ipaddress.ip_address(v)
            except ValueError:
                raise ValueError(f"{v!r} is not a valid IP address") from None
        return v


class Patches(Model):
    directory: str = ""


class Timeouts(Model):
    controlPlaneComponentHealthCheck: str = "4m0s"
    kubeletHealthCheck: str = "4m0s"
    kubernetesAPICall: str = "1m0s"
    etcdAPICall: str = "2m0s"
    tlsBootstrap: str = "5m0s"
    discovery: str = "5m0s"
    upgradeManifests: str = "5m0s"

    @field_validator("*")
    @classmethod
    def _durations(cls, v: str) -> str:
        return _duration(v)

    def seconds(self, name: str) -> float:
        return parse_duration(str(getattr(self, name)))


class InitConfiguration(Model):
    apiVersion: Literal["kubeadm.k8s.io/v1beta4"] = "kubeadm.k8s.io/v1beta4"
    kind: Literal["InitConfiguration"] = "InitConfiguration"
    bootstrapTokens: list[BootstrapToken] = Field(default_factory=lambda: [BootstrapToken()])
    dryRun: bool = False
    nodeRegistration: NodeRegistration = Field(default_factory=NodeRegistration)
    localAPIEndpoint: APIEndpoint = Field(default_factory=APIEndpoint)
    certificateKey: str = ""
    skipPhases: list[str] = Field(default_factory=list)
    patches: Patches | None = None
    timeouts: Timeouts = Field(default_factory=Timeouts)

    @field_validator("certificateKey")
    @classmethod
    def _certificate_key(cls, v: str) -> str:
        if v and not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError("certificateKey must be 64 hex characters (32 bytes)")
        return v


def dump(model: BaseModel) -> dict[str, Any]:
    """The model as kubeadm would serialise it: no None values."""
    return model.model_dump(mode="json", exclude_none=True)
