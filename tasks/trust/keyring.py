"""The keys one process holds, by role, and how they are found (``keyring_for``) or provisioned.

| role     | holds                                          | can                                        |
|----------|------------------------------------------------|--------------------------------------------|
| control  | the master key (``ControlKeys``), node pins    | sign tokens and metadata, seal to nodes,   |
|          |                                                | open anything sealed to the control side   |
| node     | its ``NodeKey``, the pinned ``ControlPublic``  | verify; open what was sealed to it; seal   |
|          |                                                | to itself and to the control side          |
| none     | nothing (Flower)                               | nothing                                    |

Default places: everything under the state directory (``<state dir>/keys/``: ``control.pub``,
``node-<worker id>.key``, ``nodes/<worker id>.pub``); a real machine names its files with
``KUBEBOOT_NODE_KEY_FILE`` and ``KUBEBOOT_CONTROL_PUBLIC_KEY_FILE`` (``workers/deploy/kubeboot-node.env``).

Provisioning (``kubeboot deploy``, ``sandbox up``, and the embedded setup, whose control side and node
workers share one state directory on one machine: a node worker, or a submit naming a node nobody
pinned yet, makes what is missing): ``ensure_control`` creates the master key if the setup makes its own
(the embedded one) and writes ``<state dir>/keys/control.pub``; ``ensure_node`` creates a node worker's
key pair; ``Pins.put`` and ``pin_control`` exchange the public halves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kubeboot.config import constants as c
from kubeboot.config.settings import Settings
from kubeboot.tasks.fsutil import atomic_write
from kubeboot.tasks.trust.keys import (
    ControlKeys,
    ControlPublic,
    NodeKey,
    Pins,
    public_raw,
    read_control_public,
    read_node_key,
)


@dataclass
class Keyring:
    control: ControlKeys | None = None
    node: NodeKey | None = None
    control_public: ControlPublic | None = None
    pins: Pins | None = None

    @property
    def role(self) -> str:
        return "control" if self.control else "node" if self.node else "none"

    @property
    def verify_key(self) -> Ed25519PublicKey | None:
        if self.control is not None:
            return self.control.public.verify
        return self.control_public.verify if self.control_public else None

    @property
    def worker(self) -> str:
        return self.node.worker if self.node else ""


def control_keyring(master: bytes, pins_dir: Path | None = None) -> Keyring:
    keys = ControlKeys(master)
    return Keyring(control=keys, control_public=keys.public, pins=Pins(pins_dir) if pins_dir else None)


def node_key_path(settings: Settings, worker: str) -> Path:
    """``KUBEBOOT_NODE_KEY_FILE``, else ``<state dir>/keys/node-<worker id>.key``."""
    return settings.node_key_file or settings.state_dir / c.NODE_KEY_STATE_FILE.format(worker=worker)


def control_public_path(settings: Settings) -> Path:
    """``KUBEBOOT_CONTROL_PUBLIC_KEY_FILE``, else ``<state dir>/keys/control.pub``."""
    return settings.control_public_key_file or settings.state_dir / c.CONTROL_PUBLIC_KEY_STATE_FILE


def keyring_for(settings: Settings, role: str, *, worker: str = "") -> Keyring:
    """The keys of a process of ``role`` (control and client: the control side; node: worker ``worker``'s;
    anything else: none)."""
    if role == "node":
        key = read_node_key(node_key_path(settings, worker))
        if key.worker != worker:
            from kubeboot.config.errors import ConfigError

            raise ConfigError(f"{node_key_path(settings, worker)}: holds worker {key.worker}'s key, not {worker}'s")
        return Keyring(node=key, control_public=read_control_public(control_public_path(settings)))
    if role in ("control", "client"):
        from kubeboot.tasks.state.secrets import load_or_create_key

        master = settings.secret_key or load_or_create_key(settings)
        ring = control_keyring(master, settings.pins_dir)
        if settings.redis_url is None and ring.pins is not None:  # the embedded setup: one machine
            ring.pins.provision = lambda worker: provision_node(settings, worker)
        return ring
    return Keyring()


# --- provisioning ----------------------------------------------------------------------------------------

def ensure_control(settings: Settings) -> ControlKeys:
    """The control side's keys (the embedded setup's master key created on first use), and
    ``<state dir>/keys/control.pub``, what node workers pin, written."""
    from kubeboot.tasks.state.secrets import load_or_create_key

    keys = ControlKeys(settings.secret_key or load_or_create_key(settings))
    path = settings.state_dir / c.CONTROL_PUBLIC_KEY_STATE_FILE
    text = keys.public.to_text()
    if not path.exists() or path.read_text() != text:
        atomic_write(path, text, 0o644, dir_mode=0o700)
    return keys


def ensure_node(path: Path, worker: str) -> NodeKey:
    """The node key at ``path``, created if missing; one of another worker id there is an error."""
    from kubeboot.config.errors import ConfigError

    if not path.exists():
        # Created once: the node worker and a submitter (which provisions in the embedded setup) may both
        # get here first; a key the other overwrote would leave the pin and the worker's key apart.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, NodeKey.generate(worker).to_text(), 0o600, dir_mode=0o700, exclusive=True)
    key = read_node_key(path)
    if key.worker != worker:
        raise ConfigError(f"{path}: holds worker {key.worker}'s key, not {worker}'s")
    return key


def pin_control(path: Path, public: ControlPublic) -> None:
    text = public.to_text()
    if not path.exists() or path.read_text() != text:
        atomic_write(path, text, 0o644, dir_mode=0o755)


def provision_node(settings: Settings, worker: str) -> NodeKey:
    """Everything one node worker needs, made on this machine as the control side would make it: its key
    pair, its pin of the control side's keys, the control side's pin of its key (the embedded setup and
    the sandbox, whose control side shares this state directory)."""
    keys = ensure_control(settings)
    node = ensure_node(node_key_path(settings, worker), worker)
    pin_control(control_public_path(settings), keys.public)
    pins = Pins(settings.pins_dir)
    pinned = pins.get(worker)
    if pinned is None or public_raw(pinned) != public_raw(node.public):
        pins.put(node.public_text())
    return node

