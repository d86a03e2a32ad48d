"""Sealing run state values: to the control side, or to one node worker, bound to where they belong.

Two formats, both text (they sit in Redis strings and hash fields):

    k1:<base64 nonce(12) || AES-256-GCM ciphertext || tag>           sealed with a cluster's data key
    x1:<writer>:<base64 ephemeral X25519 public key(32) || nonce(12) || ciphertext || tag>
                                                                     sealed to one X25519 public key

``x1`` is a sealed box: a fresh X25519 key pair per value, its shared secret with the recipient's
public key through HKDF-SHA256 (salt: both public keys) gives the AES-256-GCM key; only the holder of
the recipient's private key opens it. ``<writer>`` names the node worker that sealed it ('-' for the
control side): the reader puts it in the associated data, so a value another node sealed does not pass
for this one's, and the control side accepts a node's values only for runs that node serves.

The associated data of every value (``aad``) names its run, cluster, node, field and recipient: a
value copied to another run, cluster, field or reader fails authentication instead of opening there.
Errors say where, never what: no plaintext or key byte reaches a message.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kubeboot.tasks.state.secrets import SecretError
from kubeboot.tasks.trust.keys import public_raw

NONCE = 12
CONTROL = "control"  # the recipient name of the control side
NO_WRITER = "-"


def aad(*, run: str, cluster: str, node: str, field: str, to: str) -> bytes:
    """What a sealed value is bound to. ``node``: the node worker that wrote it or that it is for."""
    return f"kubeboot/v2|run={run}|cluster={cluster}|node={node}|field={field}|to={to}".encode()


def seal_with_key(key: bytes, plaintext: bytes, bound: bytes) -> str:
    nonce = secrets.token_bytes(NONCE)
    return "k1:" + base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plaintext, bound)).decode("ascii")


def open_with_key(key: bytes, sealed: str, bound: bytes, where: str) -> bytes:
    blob = _blob(sealed.removeprefix("k1:"), where)
    try:
        return AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:], bound)
    except InvalidTag:
        raise SecretError(f"{where}: cannot decrypt: not sealed with this cluster's key, or altered or moved "
                          "from another run, cluster or field") from None


def seal_to(public: X25519PublicKey, plaintext: bytes, bound: bytes, *, writer: str = NO_WRITER) -> str:
    ephemeral = X25519PrivateKey.generate()
    epub = public_raw(ephemeral.public_key())
    key = _box_key(ephemeral.exchange(public), epub, public_raw(public))
    nonce = secrets.token_bytes(NONCE)
    body = epub + nonce + AESGCM(key).encrypt(nonce, plaintext, bound)
    return f"x1:{writer}:" + base64.b64encode(body).decode("ascii")


def writer_of(sealed: str) -> str:
    """The writer a sealed box names ('' for a ``k1`` value)."""
    return sealed.split(":", 2)[1] if sealed.startswith("x1:") and sealed.count(":") >= 2 else ""


def open_box(private: X25519PrivateKey, sealed: str, bound: bytes, where: str) -> bytes:
    if not sealed.startswith("x1:") or sealed.count(":") < 2:
        raise SecretError(f"{where}: not a value sealed to this reader")
    blob = _blob(sealed.split(":", 2)[2], where)
    if len(blob) <= 32 + NONCE:
        raise SecretError(f"{where}: stored value is too short to be sealed")
    epub, nonce, body = blob[:32], blob[32:32 + NONCE], blob[32 + NONCE:]
    try:
        key = _box_key(private.exchange(X25519PublicKey.from_public_bytes(epub)), epub,
                       public_raw(private.public_key()))
        return AESGCM(key).decrypt(nonce, body, bound)
    except (InvalidTag, ValueError):
        raise SecretError(f"{where}: cannot decrypt: not sealed to this reader's key, or altered or moved from "
                          "another run, cluster, node or field") from None


def _box_key(shared: bytes, epub: bytes, rpub: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=epub + rpub, info=b"kubeboot seal v1").derive(shared)


def _blob(text: str, where: str) -> bytes:
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(f"{where}: stored value is not a sealed value") from None
    if len(blob) <= NONCE:
        raise SecretError(f"{where}: stored value is too short to be sealed")
    return blob
