"""The ``kubeadm-certs`` Secret's content, byte-compatible with kubeadm (phases/copycerts, util/crypto).

Reads: the node's CA files through ``NodeFS`` (``certs_to_transfer``). Writes nothing.

- Certificate key: 32 random bytes, hex-encoded (``kubeadm certs certificate-key``).
- Each file is sealed as kubeadm's ``EncryptBytes`` does: AES-256-GCM with a fresh random 12-byte
  nonce, ``gcm.Seal(nonce, nonce, data, nil)`` = ``nonce || ciphertext || 16-byte tag``, no
  additional data; ``kubeadm join --control-plane --certificate-key K`` opens it with the same key.
- Secret data keys are the file names relative to the certificates directory with ``/`` replaced by
  ``-`` (``etcd/ca.crt`` → ``etcd-ca.crt``); with external etcd the three files named in
  ``etcd.external`` are sent as ``external-etcd-ca.crt``, ``external-etcd.crt``, ``external-etcd.key``.
  A missing file is sent as an empty value, not encrypted (kubeadm's getDataFromDisk).

Sealing is randomised, so re-sealing the same file gives new bytes; ``seal_files`` keeps an existing
value that already opens to the current file under the same key, so an upload that is retried or
re-run leaves a correct Secret untouched.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kubeboot.config.resolved import InitConfig
from kubeboot.tasks.fsutil import NodeFS

CERTIFICATE_KEY_SIZE = 32  # kubeadm constants.CertificateKeySize: AES-256
NONCE_SIZE = 12  # Go's cipher.NewGCM standard nonce size
TAG_SIZE = 16

# Files under the certificates directory every upload carries (kubeadm certsToTransfer).
CA_FILES = ("ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.pub", "sa.key")
LOCAL_ETCD_FILES = ("etcd/ca.crt", "etcd/ca.key")
EXTERNAL_ETCD_CA = "external-etcd-ca.crt"
EXTERNAL_ETCD_CERT = "external-etcd.crt"
EXTERNAL_ETCD_KEY = "external-etcd.key"


class CertificateKeyError(ValueError):
    """The key is not 64 hex characters, or it does not open the data (wrong key, damaged data)."""


def create_certificate_key() -> str:
    return secrets.token_bytes(CERTIFICATE_KEY_SIZE).hex()


def decode_key(key_hex: str) -> bytes:
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        raise CertificateKeyError("error decoding certificate key: not hexadecimal") from None
    if len(key) != CERTIFICATE_KEY_SIZE:
        raise CertificateKeyError(f"error decoding certificate key: {len(key)} bytes, want {CERTIFICATE_KEY_SIZE}")
    return key


def encrypt_bytes(data: bytes, key: bytes) -> bytes:
    """kubeadm's EncryptBytes: ``nonce || AES-GCM(data)`` (the tag is appended to the ciphertext)."""
    nonce = secrets.token_bytes(NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, data, None)


def decrypt_bytes(data: bytes, key: bytes) -> bytes:
    """kubeadm's DecryptBytes; CertificateKeyError with Go's message when the key does not fit."""
    if len(data) < NONCE_SIZE:
        raise CertificateKeyError("size of data is less than the nonce")
    try:
        return AESGCM(key).decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], None)
    except InvalidTag:
        raise CertificateKeyError("cipher: message authentication failed") from None


def secret_name(file_name: str) -> str:
    """kubeadm's certOrKeyNameToSecretName."""
    return file_name.replace("/", "-")


def certs_to_transfer(cfg: InitConfig) -> dict[str, str]:
    """Secret data key → absolute node path of the file it carries."""
    pki = cfg.pki_dir
    files = {secret_name(n): f"{pki}/{n}" for n in CA_FILES}
    external = cfg.cluster.etcd.external
    if external is None:
        files.update({secret_name(n): f"{pki}/{n}" for n in LOCAL_ETCD_FILES})
    else:
        files[EXTERNAL_ETCD_CA] = external.caFile
        files[EXTERNAL_ETCD_CERT] = external.certFile
        files[EXTERNAL_ETCD_KEY] = external.keyFile
    return files


def read_files(fs: NodeFS, cfg: InitConfig) -> dict[str, bytes]:
    """The plaintext of every file to transfer; b"" for a file that is not there (or not configured)."""
    out: dict[str, bytes] = {}
    for name, path in certs_to_transfer(cfg).items():
        data = fs.read_bytes(path) if path else None
        out[name] = data if data is not None else b""
    return out


def _still_valid(sealed: bytes | None, plain: bytes, key: bytes) -> bool:
    if sealed is None:
        return False
    if not plain:
        return sealed == b""
    try:
        return decrypt_bytes(sealed, key) == plain
    except CertificateKeyError:
        return False


def seal_files(plain: Mapping[str, bytes], key: bytes, existing: Mapping[str, bytes] | None = None) -> dict[str, bytes]:
    """The Secret data for ``plain``: empty stays empty, everything else sealed with ``key``; a value
    of ``existing`` that already opens to the same plaintext is kept as it is."""
    existing = existing or {}
    out: dict[str, bytes] = {}
    for name, data in plain.items():
        old = existing.get(name)
        if _still_valid(old, data, key):
            assert old is not None
            out[name] = old
        else:
            out[name] = encrypt_bytes(data, key) if data else b""
    return out


def open_files(sealed: Mapping[str, bytes], key: bytes) -> dict[str, bytes]:
    """kubeadm's getDataFromSecret: every value opened (empty stays empty); any failure fails all."""
    return {name: decrypt_bytes(data, key) if data else b"" for name, data in sealed.items()}
