"""The kubelet's client certificate store (client-go util/certificate FileStore, pair name ``kubelet-client``).

Reads: ``/var/lib/kubelet/pki/kubelet-client-current.pem`` (certificate, then key, in one file).
Writes: ``/var/lib/kubelet/pki/kubelet-client-<YYYY-MM-DD-HH-MM-SS>.pem`` (0600) and the symlink
``kubelet-client-current.pem`` to it, swapped atomically. The link is relative: a node root is not ``/``.
A second write within the same second replaces that second's file, as the FileStore does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubeboot.config import constants as c
from kubeboot.sandbox.kubelet.layout import node_path
from kubeboot.tasks.fsutil import atomic_write

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PAIR = "kubelet-client"


@dataclass(frozen=True)
class Pair:
    cert: x509.Certificate
    cert_pem: bytes
    key_pem: bytes


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def current_path(root: Path) -> Path:
    return node_path(root, c.KUBELET_CLIENT_CURRENT_PEM)


def load_pair(cert_pem: bytes, key_data: bytes) -> Pair:
    """A certificate and its key (ValueError when either does not parse or they do not match)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_data, password=None)
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ValueError("the private key does not match the certificate")
    return Pair(cert, cert_pem, key_data)


def current(root: Path) -> Pair | None:
    """The pair ``kubelet-client-current.pem`` holds; None when there is none or it does not load."""
    try:
        data = current_path(root).read_bytes()
    except OSError:
        return None
    marker = data.find(b"-----BEGIN", data.find(b"-----END CERTIFICATE-----"))
    try:
        return load_pair(data[:marker], data[marker:]) if marker > 0 else None
    except ValueError:
        return None


def valid(pair: Pair | None, now: datetime) -> bool:
    return pair is not None and pair.cert.not_valid_before_utc <= now < pair.cert.not_valid_after_utc


def update(root: Path, cert_pem: bytes, key_data: bytes, now: datetime | None = None) -> Path:
    """Store a new pair: ``kubelet-client-<ts>.pem``, then the current link moved to it; returns the file."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d-%H-%M-%S")
    pki = node_path(root, c.KUBELET_PKI_DIR)
    pki.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = pki / f"{PAIR}-{stamp}.pem"
    atomic_write(pem, cert_pem.rstrip(b"\n") + b"\n" + key_data, 0o600)
    link = current_path(root)
    tmp_link = link.with_name(f".{link.name}.tmp")
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(pem.name)
    tmp_link.replace(link)
    return pem
