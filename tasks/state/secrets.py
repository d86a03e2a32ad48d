"""Authenticated encryption of the small secrets kept in Redis (tokens, certificate keys, kubeconfigs).

Reads: the key from ``Settings.secret_key`` (``KUBEBOOT_SECRET_KEY``) or, for the embedded setup,
``Settings.secret_key_file`` (``<state_dir>/secret.key``). Writes: that key file, once, atomically, mode 0600.

Sealed format (stored base64-encoded, so the text fits any Redis client mode)::

    nonce (12 random bytes) || AES-256-GCM ciphertext || tag (16 bytes)

The associated data is the name of the Redis key (or ``key#field``) the value is stored under: a
ciphertext copied to another key, another run or another field fails authentication instead of
decrypting into the wrong place. Nothing here logs; errors never include plaintext or key bytes.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kubeboot.config.settings import SECRET_KEY_BYTES, Settings, parse_secret_key
from kubeboot.tasks.fsutil import atomic_write

NONCE_BYTES = 12  # the GCM standard nonce; random nonces are safe far beyond kubeboot's volume


class SecretError(Exception):
    """A sealed value cannot be opened: wrong key, tampered data, or moved to another key."""


class SecretBox:
    """Encrypts and decrypts values bound to the name they are stored under."""

    def __init__(self, key: bytes) -> None:
        if len(key) != SECRET_KEY_BYTES:
            raise ValueError(f"secret key must be {SECRET_KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self._key = key

    @property
    def master_key(self) -> bytes:
        """The key itself: the control side's master key, from which ``tasks.trust.keys`` derives the rest."""
        return self._key

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def encrypt(self, plaintext: bytes, *, aad: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        blob = nonce + self._aead.encrypt(nonce, plaintext, aad.encode())
        return base64.b64encode(blob).decode("ascii")

    def decrypt(self, sealed: str | bytes, *, aad: str) -> bytes:
        try:
            blob = base64.b64decode(sealed, validate=True)
        except (binascii.Error, ValueError) as err:
            raise SecretError(f"{aad}: stored value is not a sealed secret") from err
        if len(blob) <= NONCE_BYTES:
            raise SecretError(f"{aad}: stored value is too short to be a sealed secret")
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad.encode())
        except InvalidTag:
            # Deliberately vague between the causes: AES-GCM cannot tell them apart either.
            raise SecretError(
                f"{aad}: cannot decrypt: wrong KUBEBOOT_SECRET_KEY, or the value was altered or copied "
                "from another key"
            ) from None


def box_from_settings(settings: Settings) -> SecretBox:
    """The configured key, else the embedded setup's key file (created on first use)."""
    key = settings.secret_key
    if key is None:
        key = load_or_create_key(settings)
    return SecretBox(key)


def load_or_create_key(settings: Settings) -> bytes:
    """Read ``settings.secret_key_file``; create it first if absent. Safe against concurrent first runs:
    ``atomic_write(exclusive=True)`` links rather than renames, so of two processes creating the key at
    once exactly one wins and the other reads the winner's key (a rename would let the loser overwrite
    it, and anything already sealed with the first key would become unreadable)."""
    path = settings.secret_key_file
    if not path.exists():
        text = base64.b64encode(secrets.token_bytes(SECRET_KEY_BYTES)).decode("ascii") + "\n"
        atomic_write(path, text, 0o600, dir_mode=0o700, exclusive=True)
    _refuse_loose_permissions(path)
    return parse_secret_key(path.read_text(), source=str(path))


def _refuse_loose_permissions(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretError(f"{path}: key file is accessible by other users (mode {mode:o}); run chmod 600 {path}")
