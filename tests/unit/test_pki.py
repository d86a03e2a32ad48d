"""PKI primitives: every encryptionAlgorithm, configurable validity, and the checks run on existing files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks import pki
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import certs
from kubeboot.tasks.phases.context import NodeContext

V4 = "kubeadm.k8s.io/v1beta4"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
PKI = "etc/kubernetes/pki"


def make_cfg(**cluster: str) -> InitConfig:
    return build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp-1"},
         "localAPIEndpoint": {"advertiseAddress": "192.168.0.10"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", **cluster},
    ])


def issue(root: Path, cfg: InitConfig, *names: str) -> None:
    ctx = NodeContext(cfg, NodeFS(root), out=lambda _: None, now=NOW)
    for name in names:
        certs.run_cert(ctx, name)


def load(root: Path, base: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((root / PKI / f"{base}.crt").read_bytes())


# encryptionAlgorithm: (key class, size in bits or curve, PEM header, signature hash)
ALGORITHMS = {
    "RSA-2048": (rsa.RSAPublicKey, 2048, b"RSA PRIVATE KEY", hashes.SHA256),
    "RSA-3072": (rsa.RSAPublicKey, 3072, b"RSA PRIVATE KEY", hashes.SHA256),
    "RSA-4096": (rsa.RSAPublicKey, 4096, b"RSA PRIVATE KEY", hashes.SHA256),
    "ECDSA-P256": (ec.EllipticCurvePublicKey, "secp256r1", b"EC PRIVATE KEY", hashes.SHA256),
    "ECDSA-P384": (ec.EllipticCurvePublicKey, "secp384r1", b"EC PRIVATE KEY", hashes.SHA384),
}


@pytest.mark.parametrize("alg", list(ALGORITHMS))
def test_every_encryption_algorithm_makes_a_ca_and_a_leaf_of_that_kind(alg: str, tmp_path: Path) -> None:
    kind, size, header, digest = ALGORITHMS[alg]
    issue(tmp_path, make_cfg(encryptionAlgorithm=alg), "ca", "apiserver-kubelet-client")
    ca, leaf = load(tmp_path, "ca"), load(tmp_path, "apiserver-kubelet-client")
    leaf.verify_directly_issued_by(ca)
    for base, cert in (("ca", ca), ("apiserver-kubelet-client", leaf)):
        pub = cert.public_key()
        assert isinstance(pub, kind)
        assert (pub.key_size if isinstance(pub, rsa.RSAPublicKey) else pub.curve.name) == size
        assert isinstance(cert.signature_hash_algorithm, digest)
        assert (tmp_path / PKI / f"{base}.key").read_bytes().startswith(b"-----BEGIN " + header + b"-----")
        assert pki.key_matches_algorithm(pub, alg)


VALIDITY = {
    "defaults: 1 year leaves, 10 year CAs": ({}, timedelta(days=365), timedelta(days=3650)),
    "short periods": ({"certificateValidityPeriod": "1h", "caCertificateValidityPeriod": "2h30m"},
                      timedelta(hours=1), timedelta(hours=2, minutes=30)),
    "long periods": ({"certificateValidityPeriod": "17520h", "caCertificateValidityPeriod": "175200h"},
                     timedelta(days=730), timedelta(days=7300)),
}


@pytest.mark.parametrize("cluster,leaf_validity,ca_validity", list(VALIDITY.values()), ids=list(VALIDITY))
def test_validity_periods_come_from_the_configuration(
    cluster: dict[str, str], leaf_validity: timedelta, ca_validity: timedelta, tmp_path: Path
) -> None:
    issue(tmp_path, make_cfg(encryptionAlgorithm="ECDSA-P256", **cluster), "front-proxy-ca", "front-proxy-client")
    for base, validity in (("front-proxy-ca", ca_validity), ("front-proxy-client", leaf_validity)):
        cert = load(tmp_path, base)
        assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
        assert cert.not_valid_after_utc == NOW + validity


# --- checks on existing material ------------------------------------------------------------------


Chain = tuple[x509.Certificate, pki.PrivateKey, x509.Certificate, pki.PrivateKey]


@pytest.fixture(scope="module")
def chain() -> Chain:
    """A CA, its key, a serving leaf it signed, and the leaf's key."""
    ca_key = pki.generate_key("ECDSA-P256")
    ca = pki.build_certificate(pki.CertSpec("kubernetes", is_ca=True), ca_key.public_key(), ca_key, None, NOW)
    key = pki.generate_key("ECDSA-P256")
    spec = pki.CertSpec("kube-apiserver", dns_names=("b.example", "*.apps.example", "a.example"),
                        ips=("10.0.0.1", "::1"), usages=(pki.SERVER_AUTH,))
    return ca, ca_key, pki.build_certificate(spec, key.public_key(), ca_key, ca, NOW), key


def test_a_leaf_verifies_against_its_ca_and_not_against_another(chain: Chain) -> None:
    ca, _, leaf, _ = chain
    other_key = pki.generate_key("ECDSA-P256")
    other = pki.build_certificate(pki.CertSpec("kubernetes", is_ca=True), other_key.public_key(), other_key, None, NOW)
    assert pki.signature_error(leaf, ca) is None
    assert pki.signature_error(leaf, other) is not None  # same subject, other key: the signature fails
    assert pki.is_ca(ca) and not pki.is_ca(leaf)


def test_dns_sans_are_emitted_sorted_and_wildcards_cover_one_label(chain: Chain) -> None:
    _, _, leaf, _ = chain
    assert pki.cert_sans(leaf) == (["*.apps.example", "a.example", "b.example"], ["10.0.0.1", "::1"])
    wanted = pki.CertSpec("x", dns_names=("web.apps.example", "a.b.apps.example", "c.example"), ips=("::1", "10.0.0.2"))
    assert pki.missing_sans(leaf, wanted) == (["a.b.apps.example", "c.example"], ["10.0.0.2"])
    assert pki.has_server_auth(leaf)


def test_period_errors_say_which_bound_is_crossed(chain: Chain) -> None:
    _, _, leaf, _ = chain
    assert pki.period_error(leaf, NOW) is None
    assert (pki.period_error(leaf, NOW - timedelta(hours=1)) or "").startswith("the certificate is not valid yet")
    assert (pki.period_error(leaf, NOW + timedelta(days=366)) or "").startswith("the certificate has expired")


def test_keys_match_only_their_own_certificate(chain: Chain) -> None:
    ca, ca_key, leaf, key = chain
    assert pki.key_matches_cert(key, leaf) and pki.key_matches_cert(ca_key, ca)
    assert not pki.key_matches_cert(ca_key, leaf)


@pytest.mark.parametrize("pem", [None, b"", b"-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n"],
                         ids=["missing", "empty", "garbage"])
def test_unreadable_files_load_as_none(pem: bytes | None) -> None:
    assert pki.load_cert_or_none(pem) is None
    assert pki.load_key_or_none(pem) is None
