"""The certificate table of kubeadm-spec 2.2, row by row, and the invariants of the table itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import certlist
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import certs
from kubeboot.tasks.phases.context import NodeContext

V4 = "kubeadm.k8s.io/v1beta4"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
PKI = "etc/kubernetes/pki"
SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


def make_cfg(cluster: dict[str, Any] | None = None, version: str = "v1.36.1", alg: str = "ECDSA-P256") -> InitConfig:
    return build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp-1"},
         "localAPIEndpoint": {"advertiseAddress": "192.168.0.10"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "kubernetesVersion": version,
         "encryptionAlgorithm": alg, **(cluster or {})},
    ])


RICH = {
    "controlPlaneEndpoint": "lb.example.com:6443",
    "networking": {"serviceSubnet": "10.100.0.0/16", "dnsDomain": "corp.internal"},
    "apiServer": {"certSANs": ["10.0.0.5", "api.example.com", "*.apps.example.com"]},
    "etcd": {"local": {"serverCertSANs": ["etcd.example.com", "10.0.0.7"], "peerCertSANs": ["peer.example.com"]}},
    "certificateValidityPeriod": "48h",
    "caCertificateValidityPeriod": "240h",
}


def run_all(cfg: InitConfig, root: Path, now: datetime = NOW) -> list[str]:
    lines: list[str] = []
    ctx = NodeContext(cfg, NodeFS(root), out=lines.append, now=now)
    certs.run_certs(ctx)
    for r in certlist.cert_table(cfg):
        certs.run_cert(ctx, r.name)
    certs.run_sa(ctx)
    return lines


def load(root: Path, base: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((root / PKI / f"{base}.crt").read_bytes())


# --- one case per row ------------------------------------------------------------------------------

# version, encryptionAlgorithm: v1.35 and v1.36 differ in the O of apiserver-kubelet-client.
SCENARIOS = {"v1.36 RSA-2048": ("v1.36.1", "RSA-2048"), "v1.35 ECDSA-P256": ("v1.35.0", "ECDSA-P256")}


@pytest.fixture(scope="module", params=list(SCENARIOS), ids=list(SCENARIOS))
def issued(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    version, alg = SCENARIOS[request.param]
    root = tmp_path_factory.mktemp("pki")
    run_all(make_cfg(RICH, version, alg), root)
    return version, alg, root


APISERVER_DNS = {"cp-1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.corp.internal", "lb.example.com", "api.example.com", "*.apps.example.com"}
ETCD_IPS = {"192.168.0.10", "127.0.0.1", "::1"}

# file, issuer file (None: self-signed), CN, O in v1.35, O in v1.36, ExtKeyUsage, DNS SANs, IP SANs
ROWS: dict[str, tuple[str, str | None, str, list[str], list[str], list[Any], set[str], set[str]]] = {
    "ca": ("ca", None, "kubernetes", [], [], [], {"kubernetes"}, set()),
    "apiserver": ("apiserver", "ca", "kube-apiserver", [], [], [SERVER], APISERVER_DNS,
                  {"10.100.0.1", "192.168.0.10", "10.0.0.5"}),
    "apiserver-kubelet-client": ("apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client",
                                 ["kubeadm:cluster-admins"], [], [CLIENT], set(), set()),
    "front-proxy-ca": ("front-proxy-ca", None, "front-proxy-ca", [], [], [], {"front-proxy-ca"}, set()),
    "front-proxy-client": ("front-proxy-client", "front-proxy-ca", "front-proxy-client", [], [], [CLIENT],
                           set(), set()),
    "etcd-ca": ("etcd/ca", None, "etcd-ca", [], [], [], {"etcd-ca"}, set()),
    "etcd-server": ("etcd/server", "etcd/ca", "cp-1", [], [], [SERVER, CLIENT],
                    {"cp-1", "localhost", "etcd.example.com"}, ETCD_IPS | {"10.0.0.7"}),
    "etcd-peer": ("etcd/peer", "etcd/ca", "cp-1", [], [], [SERVER, CLIENT],
                  {"cp-1", "localhost", "peer.example.com"}, ETCD_IPS),
    "etcd-healthcheck-client": ("etcd/healthcheck-client", "etcd/ca", "kube-etcd-healthcheck-client", [], [],
                                [CLIENT], set(), set()),
    "apiserver-etcd-client": ("apiserver-etcd-client", "etcd/ca", "kube-apiserver-etcd-client", [], [], [CLIENT],
                              set(), set()),
}


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(ext.get_values_for_type(x509.DNSName)), {str(i) for i in ext.get_values_for_type(x509.IPAddress)}


@pytest.mark.parametrize("name", list(ROWS))
def test_each_certificate_says_what_the_spec_table_says(name: str, issued: tuple[str, str, Path]) -> None:
    version, alg, root = issued
    base, issuer_base, cn, org35, org36, eku, dns, ips = ROWS[name]
    cert = load(root, base)
    is_ca = issuer_base is None
    issuer = cert if is_ca else load(root, issuer_base)  # type: ignore[arg-type]

    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == (org35 if version.startswith("v1.35") else org36)
    assert cert.issuer == issuer.subject
    cert.verify_directly_issued_by(issuer)
    assert sans(cert) == (dns, ips)

    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert (ku.value.digital_signature, ku.value.key_encipherment, ku.value.key_cert_sign) == (True, True, is_ca)
    assert not (ku.value.content_commitment or ku.value.data_encipherment or ku.value.crl_sign)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is is_ca
    if is_ca:
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    else:
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == eku

    validity = timedelta(hours=240 if is_ca else 48)
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == validity + timedelta(minutes=5)

    key_pem = (root / PKI / f"{base}.key").read_bytes()
    pub = cert.public_key()
    if alg == "RSA-2048":
        assert isinstance(pub, rsa.RSAPublicKey) and pub.key_size == 2048
        assert key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    else:
        assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"
        assert key_pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)


def test_first_run_prints_kubeadms_transcript(tmp_path: Path) -> None:
    lines = run_all(make_cfg({"controlPlaneEndpoint": "lb.example.com:6443"}), tmp_path)
    assert lines == [
        '[certs] Using certificateDir folder "/etc/kubernetes/pki"',
        '[certs] Generating "ca" certificate and key',
        '[certs] Generating "apiserver" certificate and key',
        "[certs] apiserver serving cert is signed for DNS names [cp-1 kubernetes kubernetes.default "
        "kubernetes.default.svc kubernetes.default.svc.cluster.local lb.example.com] and IPs [10.96.0.1 192.168.0.10]",
        '[certs] Generating "apiserver-kubelet-client" certificate and key',
        '[certs] Generating "front-proxy-ca" certificate and key',
        '[certs] Generating "front-proxy-client" certificate and key',
        '[certs] Generating "etcd/ca" certificate and key',
        '[certs] Generating "etcd/server" certificate and key',
        "[certs] etcd/server serving cert is signed for DNS names [cp-1 localhost] and IPs "
        "[192.168.0.10 127.0.0.1 ::1]",
        '[certs] Generating "etcd/peer" certificate and key',
        "[certs] etcd/peer serving cert is signed for DNS names [cp-1 localhost] and IPs [192.168.0.10 127.0.0.1 ::1]",
        '[certs] Generating "etcd/healthcheck-client" certificate and key',
        '[certs] Generating "apiserver-etcd-client" certificate and key',
        '[certs] Generating "sa" key and public key',
    ]


# --- SAN variants -----------------------------------------------------------------------------------

SAN_CASES = {
    "controlPlaneEndpoint with an IP host adds an IP": (
        {"controlPlaneEndpoint": "10.0.0.100:6443"}, set(), {"10.0.0.100"}),
    "controlPlaneEndpoint without a port still adds its host": (
        {"controlPlaneEndpoint": "api.corp"}, {"api.corp"}, set()),
    "IPv6 controlPlaneEndpoint host": ({"controlPlaneEndpoint": "[fd00::1]:6443"}, set(), {"fd00::1"}),
    "certSANs DNS names and wildcards are DNS SANs": (
        {"apiServer": {"certSANs": ["ok.example.com", "*.ok.example.com"]}}, {"ok.example.com", "*.ok.example.com"},
        set()),
    "certSANs repeating defaults are not duplicated": (
        {"apiServer": {"certSANs": ["kubernetes", "192.168.0.10"]}}, set(), set()),
}


@pytest.mark.parametrize("cluster,extra_dns,extra_ips", list(SAN_CASES.values()), ids=list(SAN_CASES))
def test_apiserver_sans_follow_the_configuration(
    cluster: dict[str, Any], extra_dns: set[str], extra_ips: set[str], tmp_path: Path
) -> None:
    ctx = NodeContext(make_cfg(cluster), NodeFS(tmp_path), out=lambda _: None, now=NOW)
    certs.run_cert(ctx, "ca")
    certs.run_cert(ctx, "apiserver")
    base_dns = {"cp-1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local"}
    assert sans(load(tmp_path, "apiserver")) == (base_dns | extra_dns, {"10.96.0.1", "192.168.0.10"} | extra_ips)


def test_user_sans_are_sorted_into_dns_names_ips_and_rejects_like_kubeadm() -> None:
    # The loader already refuses bad certSANs; the table still sorts them as appendSANsToAltNames does.
    assert certlist.split_sans(["10.0.0.1", "fd00::0001", "a.example.com", "*.b.example.com", "Bad_Name", "*"]) == (
        ["a.example.com", "*.b.example.com"], ["10.0.0.1", "fd00::1"], ["Bad_Name", "*"])


# --- the table as data --------------------------------------------------------------------------------


def test_every_ca_named_exists_and_comes_before_its_leaves() -> None:
    seen: set[str] = set()
    for r in certlist.CERTS:
        if r.ca is not None:
            assert r.ca in seen, f"{r.name} is signed by {r.ca}, which is not an earlier row"
            assert certlist.row(r.ca).is_ca
        seen.add(r.name)


def test_names_and_file_names_are_unique() -> None:
    assert len({r.name for r in certlist.CERTS}) == len(certlist.CERTS)
    assert len({r.base_name for r in certlist.CERTS}) == len(certlist.CERTS)


def test_the_table_matches_the_certs_sub_phases_in_kubeadms_order() -> None:
    assert [r.name for r in certlist.CERTS] == [
        "ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca", "front-proxy-client",
        "etcd-ca", "etcd-server", "etcd-peer", "etcd-healthcheck-client", "apiserver-etcd-client",
    ]


def test_external_etcd_drops_the_etcd_ca_and_everything_it_signs() -> None:
    cfg = make_cfg({"etcd": {"external": {"endpoints": ["https://10.0.0.9:2379"]}}})
    assert [r.name for r in certlist.cert_table(cfg)] == [
        "ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca", "front-proxy-client"]
    assert len(certlist.cert_table(make_cfg())) == 10


def test_an_unknown_row_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="one of: ca, apiserver"):
        certlist.row("kubelet")
