"""Keys and X.509 certificates as kubeadm's pkiutil makes them.

Pure functions over ``cryptography`` objects plus PEM (de)serialisation; no file I/O here (the
phases write through ``NodeFS``). kubeadm rules kept here: random serial in [1, 2^63-1), notBefore
backdated 5 minutes, CA certs carry their CN as a DNS SAN, leaves get DigitalSignature |
KeyEncipherment whatever the key type, DNS SANs de-duplicated and sorted.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeboot.config.constants import CERTIFICATE_BACKDATE_SECONDS

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH


def generate_key(algorithm: str) -> PrivateKey:
    """A new private key for ``encryptionAlgorithm`` (RSA-2048/3072/4096, ECDSA-P256/P384)."""
    kind, _, size = algorithm.partition("-")
    if kind == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=int(size))
    if kind == "ECDSA":
        curve = {"P256": ec.SECP256R1(), "P384": ec.SECP384R1()}[size]
        return ec.generate_private_key(curve)
    raise ValueError(f"unknown encryptionAlgorithm {algorithm!r}")


def key_matches_algorithm(key: PrivateKey | PublicKey, algorithm: str) -> bool:
    kind, _, size = algorithm.partition("-")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return kind == "RSA" and key.key_size == int(size)
    curve = {"P256": "secp256r1", "P384": "secp384r1"}.get(size)
    return kind == "ECDSA" and key.curve.name == curve


@dataclass(frozen=True)
class CertSpec:
    """What a certificate must say (kubeadm's certutil.Config)."""

    common_name: str
    organization: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    usages: tuple[x509.ObjectIdentifier, ...] = ()  # extended key usages
    is_ca: bool = False
    validity_seconds: float = 365 * 24 * 3600
    extra: dict[str, str] = field(default_factory=dict)

    def sans(self) -> tuple[list[str], list[str]]:
        """(DNS names sorted and unique, IPs unique in order), as kubeadm emits them."""
        dns = sorted(set(self.dns_names))
        seen: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        ips: list[str] = []
        for ip in self.ips:
            addr = ipaddress.ip_address(ip)
            if addr not in seen:
                seen.add(addr)
                ips.append(str(addr))
        return dns, ips


def _name(spec: CertSpec) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in spec.organization]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name))
    return x509.Name(attrs)


def _signing_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def build_certificate(
    spec: CertSpec,
    public_key: PublicKey,
    signer_key: PrivateKey,
    issuer: x509.Certificate | None,
    now: datetime,
) -> x509.Certificate:
    """Sign ``spec`` for ``public_key``; self-signed when ``issuer`` is None."""
    subject = _name(spec)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(public_key)
        .serial_number(secrets.randbelow(2**63 - 2) + 1)
        .not_valid_before(now - timedelta(seconds=CERTIFICATE_BACKDATE_SECONDS))
        .not_valid_after(now + timedelta(seconds=spec.validity_seconds))
    )
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=True,
            key_encipherment=True,
            key_cert_sign=spec.is_ca,
            content_commitment=False,
            data_encipherment=False,
            key_agreement=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    if spec.usages and not spec.is_ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(spec.usages)), critical=False)
    builder = builder.add_extension(x509.BasicConstraints(ca=spec.is_ca, path_length=None), critical=True)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False
        )
    else:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    dns, ips = spec.sans()
    if spec.is_ca:
        dns = [spec.common_name]
    general: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    general += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if general:
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    return builder.sign(signer_key, _signing_hash(signer_key))


# --- PEM -----------------------------------------------------------------------------------------


def key_to_pem(key: PrivateKey) -> bytes:
    """PKCS#1 ``RSA PRIVATE KEY`` / SEC1 ``EC PRIVATE KEY``, as kubeadm's keyutil writes them."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def public_key_to_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(pem: bytes) -> PrivateKey:
    # OpenSSL's full RSA key check (primality of p and q) costs as much as generating the key, and
    # re-runs load every key. Go's keyutil does not do it either; the phases instead check that a key
    # matches its certificate, which catches the real failure (a pair torn by an interrupted write).
    key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("unsupported private key type")
    return key


def load_public_key(pem: bytes) -> PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("unsupported public key type")
    return key


def load_cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def public_key_der(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def ca_cert_hash(cert: x509.Certificate) -> str:
    """``sha256:<hex>`` of the DER SubjectPublicKeyInfo (kubeadm's --discovery-token-ca-cert-hash)."""
    digest = hashes.Hash(hashes.SHA256())
    pub = cert.public_key()
    if not isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("unsupported CA public key type")
    digest.update(public_key_der(pub))
    return "sha256:" + digest.finalize().hex()


# --- checks on existing material (kubeadm's TryLoad* / VerifyCertChain / ValidateCertPeriod) ------


def load_cert_or_none(pem: bytes | None) -> x509.Certificate | None:
    """The first certificate of a PEM file, or None when the file is missing or unreadable."""
    if pem is None:
        return None
    try:
        return load_cert(pem)
    except ValueError:
        return None


def load_key_or_none(pem: bytes | None) -> PrivateKey | None:
    if pem is None:
        return None
    try:
        return load_key(pem)
    except (ValueError, TypeError):
        return None


def key_matches_cert(key: PrivateKey, cert: x509.Certificate) -> bool:
    pub = cert.public_key()
    if not isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return False
    return public_key_der(key.public_key()) == public_key_der(pub)


def signature_error(cert: x509.Certificate, issuer: x509.Certificate) -> str | None:
    """Why ``cert`` was not directly issued by ``issuer`` (None when it was)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except InvalidSignature:  # carries no message of its own
        return "x509: certificate signed by unknown authority (signature does not verify with the CA key)"
    except (ValueError, TypeError) as e:
        return f"x509: certificate signed by unknown authority ({e})"
    return None


def period_error(cert: x509.Certificate, now: datetime) -> str | None:
    """kubeadm's ValidateCertPeriod message, or None when ``now`` lies inside the validity period."""
    before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
    period = f"NotBefore: {before}, NotAfter: {after}"
    if now < before:
        return f"the certificate is not valid yet: {period}"
    if now > after:
        return f"the certificate has expired: {period}"
    return None


def cert_sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """(DNS names, IPs) of the certificate, in the certificate's order."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = [str(d) for d in ext.get_values_for_type(x509.DNSName)]
    ips = [str(i) for i in ext.get_values_for_type(x509.IPAddress)]
    return dns, ips


def _dns_covered(name: str, names: set[str]) -> bool:
    name = name.lower()
    if name in names:
        return True
    _, _, parent = name.partition(".")
    return bool(parent) and f"*.{parent}" in names


def missing_sans(cert: x509.Certificate, spec: CertSpec) -> tuple[list[str], list[str]]:
    """Names and IPs ``spec`` asks for that the certificate does not cover (kubeadm's VerifyHostname)."""
    have_dns, have_ips = cert_sans(cert)
    dns_set = {d.lower() for d in have_dns}
    ip_set = {ipaddress.ip_address(i) for i in have_ips}
    want_dns, want_ips = spec.sans()
    return (
        [d for d in want_dns if not _dns_covered(d, dns_set)],
        [i for i in want_ips if ipaddress.ip_address(i) not in ip_set],
    )


def has_server_auth(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return SERVER_AUTH in eku


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
