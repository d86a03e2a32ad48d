"""Key material: the control side's (derived from one master key) and each node worker's own.

Control side (the submitter CLI and the control worker): the master key, 32 bytes
(``KUBEBOOT_SECRET_KEY`` / ``KUBEBOOT_SECRET_KEY_FILE``, else ``<state dir>/secret.key``, generated once
for the embedded setup). Every control key is derived from it with HKDF-SHA256, one label each, so there
is one secret to keep and to back up:

| key      | type             | use                                                                 |
|----------|------------------|---------------------------------------------------------------------|
| signing  | Ed25519          | signs task tokens and run metadata (``tasks.trust.tokens``)         |
| box      | X25519           | opens what node workers seal to the control side (admin.conf, ...)  |
| wrap     | AES-256-GCM key  | wraps each cluster's data key (``tasks.state.clusterkeys``)         |

Node side: the node worker's own X25519 private key (``<root>/etc/kubeboot/node.key``, mode 0600, or
``KUBEBOOT_NODE_KEY_FILE``), and its pin of the control side's public keys (``control.pub``). A node
worker holds no signing key and no master key: it can verify, and open what was sealed to it, nothing
else. The control side pins every node worker's public key (``<pins dir>/<worker id>.pub``), so what it
seals for a node only that node opens.

File formats, one line of text each (base64 of the raw 32-byte keys)::

    node.key     kubeboot-node-key v1 <worker id> <private key>
    <id>.pub     kubeboot-node-pub v1 <worker id> <public key>
    control.pub  kubeboot-control-pub v1 <Ed25519 public key> <X25519 public key>
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kubeboot.config.errors import ConfigError
from kubeboot.tasks.fsutil import atomic_write

NODE_KEY_TAG = "kubeboot-node-key"
NODE_PUB_TAG = "kubeboot-node-pub"
CONTROL_PUB_TAG = "kubeboot-control-pub"
VERSION = "v1"
_RAW = serialization.Encoding.Raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"not a {what}: expected 32 bytes in base64")
    return raw


def derive(master: bytes, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(master)


def public_raw(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(_RAW, serialization.PublicFormat.Raw)


class ControlKeys:
    """The control side's keys, derived from the master key (module docstring)."""

    def __init__(self, master: bytes) -> None:
        if len(master) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._master = master

    def __repr__(self) -> str:
        return "ControlKeys(<hidden>)"

    @cached_property
    def signing(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(derive(self._master, "kubeboot signing v1"))

    @cached_property
    def box(self) -> X25519PrivateKey:
        return X25519PrivateKey.from_private_bytes(derive(self._master, "kubeboot control box v1"))

    @cached_property
    def wrap(self) -> bytes:
        return derive(self._master, "kubeboot cluster-key wrap v1")

    @cached_property
    def public(self) -> ControlPublic:
        return ControlPublic(self.signing.public_key(), self.box.public_key())


@dataclass(frozen=True)
class ControlPublic:
    """What a node worker pins of the control side: the key that signs, the key it seals to."""

    verify: Ed25519PublicKey
    box: X25519PublicKey

    def to_text(self) -> str:
        return f"{CONTROL_PUB_TAG} {VERSION} {_b64(public_raw(self.verify))} {_b64(public_raw(self.box))}\n"

    @classmethod
    def from_text(cls, text: str, source: str) -> ControlPublic:
        parts = text.split()
        if len(parts) != 4 or parts[:2] != [CONTROL_PUB_TAG, VERSION]:
            raise ConfigError(f"{source}: not a kubeboot control public key file ({CONTROL_PUB_TAG} {VERSION} ...)")
        try:
            return cls(Ed25519PublicKey.from_public_bytes(_unb64(parts[2], "public key")),
                       X25519PublicKey.from_public_bytes(_unb64(parts[3], "public key")))
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None


@dataclass(frozen=True)
class NodeKey:
    """One node worker's own key pair."""

    worker: str
    private: X25519PrivateKey

    def __repr__(self) -> str:
        return f"NodeKey({self.worker}, <hidden>)"

    @classmethod
    def generate(cls, worker: str) -> NodeKey:
        return cls(worker, X25519PrivateKey.generate())

    @property
    def public(self) -> X25519PublicKey:
        return self.private.public_key()

    def to_text(self) -> str:
        raw = self.private.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        return f"{NODE_KEY_TAG} {VERSION} {self.worker} {_b64(raw)}\n"

    def public_text(self) -> str:
        return f"{NODE_PUB_TAG} {VERSION} {self.worker} {_b64(public_raw(self.public))}\n"

    @classmethod
    def from_text(cls, text: str, source: str) -> NodeKey:
        parts = text.split()
        if len(parts) != 4 or parts[:2] != [NODE_KEY_TAG, VERSION]:
            raise ConfigError(f"{source}: not a kubeboot node key file ({NODE_KEY_TAG} {VERSION} <worker id> ...)")
        try:
            return cls(parts[2], X25519PrivateKey.from_private_bytes(_unb64(parts[3], "private key")))
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None


def parse_node_public(text: str, source: str) -> tuple[str, X25519PublicKey]:
    """(worker id, public key) of a ``<id>.pub`` line."""
    parts = text.split()
    if len(parts) != 4 or parts[:2] != [NODE_PUB_TAG, VERSION]:
        raise ConfigError(f"{source}: not a kubeboot node public key ({NODE_PUB_TAG} {VERSION} <worker id> ...)")
    try:
        return parts[2], X25519PublicKey.from_public_bytes(_unb64(parts[3], "public key"))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


class Pins:
    """The control side's pins of node workers' public keys: ``<dir>/<worker id>.pub``."""

    def __init__(self, directory: Path, provision: Callable[[str], object] | None = None) -> None:
        self.dir = directory
        # The embedded setup pins a node worker nobody provisioned yet by making its key (keyring_for).
        self.provision = provision
        self._cache: dict[str, X25519PublicKey | None] = {}

    def path(self, worker: str) -> Path:
        return self.dir / f"{worker}.pub"

    def get(self, worker: str) -> X25519PublicKey | None:
        """The pinned key of ``worker`` (None when none is pinned); a pin naming another worker is an error."""
        if self._cache.get(worker) is None:
            path = self.path(worker)
            if not path.exists() and self.provision is not None:
                self.provision(worker)
            try:
                text = path.read_text()
            except FileNotFoundError:
                return None
            named, key = parse_node_public(text, str(path))
            if named != worker:
                raise ConfigError(f"{path}: the key is worker {named}'s, not {worker}'s")
            self._cache[worker] = key
        return self._cache[worker]

    def put(self, public_text: str) -> str:
        """Pin the key of a ``<id>.pub`` line; returns the worker id."""
        worker, _ = parse_node_public(public_text, "public key")
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(self.path(worker), public_text.strip() + "\n", 0o644)
        self._cache.pop(worker, None)
        return worker


def read_node_key(path: Path) -> NodeKey:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no node key (make one with `kubeboot deploy node-key --id ID`)") from None
    mode = path.stat().st_mode & 0o077
    if mode:
        raise ConfigError(f"{path}: node key is readable by other users; run chmod 600 {path}")
    return NodeKey.from_text(text, str(path))


def write_node_key(path: Path, key: NodeKey) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, key.to_text(), 0o600)


def read_control_public(path: Path) -> ControlPublic:
    try:
        return ControlPublic.from_text(path.read_text(), str(path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no pinned control public key (copy the control side's "
                          "`kubeboot deploy control-public-key` output there)") from None
