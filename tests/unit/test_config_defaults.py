"""An empty configuration takes kubeadm's v1beta4 defaults (kubeadm-spec 2.16)."""

from __future__ import annotations

import pytest

from kubeboot.config.duration import parse_duration
from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.config.versions import PROFILES, SUPPORTED_MINORS, Version, profile


@pytest.fixture(scope="module")
def cfg() -> InitConfig:
    return build_init_config([], fill_node_defaults=False)


SPEC_2_16 = [
    ("kubernetesVersion is v1.36, kubeboot's target", lambda cfg: cfg.version.minor, 36),
    ("imageRepository", lambda cfg: cfg.cluster.imageRepository, "registry.k8s.io"),
    ("clusterName", lambda cfg: cfg.cluster.clusterName, "kubernetes"),
    ("serviceSubnet", lambda cfg: cfg.cluster.networking.serviceSubnet, "10.96.0.0/12"),
    ("dnsDomain", lambda cfg: cfg.cluster.networking.dnsDomain, "cluster.local"),
    ("podSubnet is empty", lambda cfg: cfg.cluster.networking.podSubnet, ""),
    ("certificatesDir", lambda cfg: cfg.cluster.certificatesDir, "/etc/kubernetes/pki"),
    ("etcd is local", lambda cfg: cfg.cluster.is_external_etcd, False),
    ("etcd.local.dataDir", lambda cfg: cfg.cluster.local_etcd.dataDir, "/var/lib/etcd"),
    ("localAPIEndpoint.bindPort", lambda cfg: cfg.bind_port, 6443),
    ("encryptionAlgorithm", lambda cfg: cfg.cluster.encryptionAlgorithm, "RSA-2048"),
    ("certificateValidityPeriod is 8760h", lambda cfg: cfg.cert_validity_seconds, 8760 * 3600),
    ("caCertificateValidityPeriod is 87600h", lambda cfg: cfg.ca_validity_seconds, 87600 * 3600),
    ("imagePullPolicy", lambda cfg: cfg.init.nodeRegistration.imagePullPolicy, "IfNotPresent"),
    ("imagePullSerial", lambda cfg: cfg.init.nodeRegistration.imagePullSerial, True),
    ("one bootstrap token", lambda cfg: len(cfg.init.bootstrapTokens), 1),
    ("bootstrap token ttl is 24h", lambda cfg: parse_duration(cfg.init.bootstrapTokens[0].ttl), 24 * 3600),
    ("bootstrap token usages", lambda cfg: cfg.init.bootstrapTokens[0].usages, ["signing", "authentication"]),
    ("bootstrap token group", lambda cfg: cfg.init.bootstrapTokens[0].groups,
     ["system:bootstrappers:kubeadm:default-node-token"]),
    ("taints unset: the control-plane taint applies", lambda cfg: cfg.init.nodeRegistration.taints, None),
    ("first service IP", lambda cfg: cfg.first_service_ip, "10.96.0.1"),
    ("DNS service IP is the 10th", lambda cfg: cfg.dns_service_ip, "10.96.0.10"),
]

TIMEOUTS_2_16 = [
    ("controlPlaneComponentHealthCheck", 4 * 60),
    ("kubeletHealthCheck", 4 * 60),
    ("kubernetesAPICall", 60),
    ("etcdAPICall", 2 * 60),
    ("tlsBootstrap", 5 * 60),
    ("discovery", 5 * 60),
    ("upgradeManifests", 5 * 60),
]


@pytest.mark.parametrize(("read", "expected"), [row[1:] for row in SPEC_2_16], ids=[row[0] for row in SPEC_2_16])
def test_default_matches_spec_2_16(cfg: InitConfig, read, expected) -> None:
    assert read(cfg) == expected


@pytest.mark.parametrize(("name", "seconds"), TIMEOUTS_2_16, ids=[t[0] for t in TIMEOUTS_2_16])
def test_default_timeout_matches_spec_2_16(cfg: InitConfig, name: str, seconds: int) -> None:
    assert cfg.init.timeouts.seconds(name) == seconds


def test_version_labels_mean_the_default_version() -> None:
    cfg = build_init_config([{"kind": "ClusterConfiguration", "apiVersion": "kubeadm.k8s.io/v1beta4",
                              "kubernetesVersion": "stable-1"}], fill_node_defaults=False)
    assert cfg.version.text == "v1.36.1"


@pytest.mark.parametrize("minor", SUPPORTED_MINORS, ids=lambda m: f"v1.{m}")
def test_every_supported_minor_has_a_profile_with_etcd_3_6_and_pause_3_10_1(minor: int) -> None:
    p = profile(Version.parse(f"v1.{minor}.0"))
    assert p is PROFILES[minor]
    assert p.etcd_is_36
    assert p.pause_version == "3.10.1"
