"""``kubeboot deploy ...``: what a real deployment needs on its machines, written out.

The central side (one machine, ``compose.yaml``): Redis with its ACL users and TLS, the control worker,
Flower. Each node machine: the node worker as a systemd unit next to the kubelet (``kubeboot-node.service``
and its environment file, shipped under ``workers/deploy/``). Keys never travel as environment values:

| command                                | where    | writes                                                     |
|----------------------------------------|----------|------------------------------------------------------------|
| ``control-public-key``                 | control  | the control side's public keys (what every node pins)       |
| ``node-key --id ID``                   | node     | the node worker's own key pair (0600); prints its public    |
|                                        |          | key line                                                    |
| ``register-node LINE|FILE``            | control  | the pin of a node worker's public key                       |
| ``redis-acl --dir D --redis URL ...``  | control  | ``users.acl`` for Redis and one URL file per user (0600)    |
| ``print-systemd-unit``, ``print-env``  | node     | the unit and its environment file                           |
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from kubeboot.workers.cli_common import BAD_INPUT, fail

DEPLOY_DIR = Path(__file__).resolve().parent / "deploy"
UNIT = "kubeboot-node.service"
ENV = "kubeboot-node.env"


@click.group("deploy")
def deploy_group() -> None:
    """Keys, Redis users and the node worker's systemd unit of a real deployment."""


def _settings() -> object:
    from kubeboot.config.errors import ConfigError
    from kubeboot.config.settings import Settings

    try:
        return Settings.from_env()
    except ConfigError as e:
        fail(str(e), BAD_INPUT)


def _out(text: str, out: str | None, mode: int = 0o644) -> None:
    if out is None:
        click.echo(text, nl=False)
        return
    from kubeboot.tasks.fsutil import atomic_write

    atomic_write(Path(out), text, mode)


@deploy_group.command("print-systemd-unit")
@click.option("--kubeboot", "exe", metavar="PATH", help="The kubeboot executable (default: this one).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
def print_unit(exe: str | None, out: str | None) -> None:
    """kubeboot-node.service: the node worker of this machine, beside the kubelet."""
    found = exe or shutil.which("kubeboot") or str(Path(sys.argv[0]).resolve())
    if not Path(found).is_absolute():
        fail(f"--kubeboot {found}: give an absolute path", BAD_INPUT)
    _out((DEPLOY_DIR / UNIT).read_text().replace("@KUBEBOOT@", found), out)


@deploy_group.command("print-env")
@click.option("--id", "worker", required=True, help="The node worker's id (its node name).")
@click.option("--redis", "host", default="redis.example:6380", show_default=True, help="Redis host:port.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write here (mode 0600) instead of stdout.")
def print_env(worker: str, host: str, out: str | None) -> None:
    """kubeboot-node.env: the unit's environment (files for every secret)."""
    _check_worker(worker)
    text = (DEPLOY_DIR / ENV).read_text().replace("@NODE_ID@", worker).replace("@REDIS_HOST@", host)
    _out(text, out, 0o600)


@deploy_group.command("node-key")
@click.option("--id", "worker", required=True, help="The node worker's id (its node name).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="The private key file (default KUBEBOOT_NODE_KEY_FILE, else <state dir>/keys/node-<id>.key).")
def node_key(worker: str, out: str | None) -> None:
    """Make this node worker's key pair (kept if it exists); print its public key line for register-node."""
    from kubeboot.config.errors import ConfigError
    from kubeboot.tasks.trust.keyring import ensure_node, node_key_path

    _check_worker(worker)
    path = Path(out) if out else node_key_path(_settings(), worker)  # type: ignore[arg-type]
    try:
        key = ensure_node(path, worker)
    except ConfigError as e:
        fail(str(e), BAD_INPUT)
    click.echo(key.public_text(), nl=False)


@deploy_group.command("register-node")
@click.argument("public_key")
def register_node(public_key: str) -> None:
    """Pin a node worker's public key on the control side (the line `node-key` printed, or a file of it)."""
    from kubeboot.config.errors import ConfigError
    from kubeboot.tasks.trust.keys import Pins

    text = Path(public_key).read_text() if Path(public_key).is_file() else public_key
    settings = _settings()
    try:
        worker = Pins(settings.pins_dir).put(text)  # type: ignore[attr-defined]
    except ConfigError as e:
        fail(str(e), BAD_INPUT)
    click.echo(f"[deploy] pinned the key of node worker {worker} in {settings.pins_dir}")  # type: ignore[attr-defined]


@deploy_group.command("control-public-key")
@click.option("--out", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
def control_public_key(out: str | None) -> None:
    """The control side's public keys (signing, sealing), for every node's KUBEBOOT_CONTROL_PUBLIC_KEY_FILE."""
    from kubeboot.tasks.trust.keyring import ensure_control

    _out(ensure_control(_settings()).public.to_text(), out)  # type: ignore[arg-type]


@deploy_group.command("redis-acl")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False), help="Where to write.")
@click.option("--redis", "address", required=True, metavar="URL",
              help="How clients reach Redis: rediss://host:port (TLS) or redis://host:port.")
@click.option("--node", "nodes", multiple=True, help="A node worker's id (repeatable).")
def redis_acl(directory: str, address: str, nodes: tuple[str, ...]) -> None:
    """users.acl (users control, flower, node-<id>) and each user's URL file (<user>.url, mode 0600).
    A user whose URL file exists keeps its password."""
    from urllib.parse import unquote, urlsplit

    from kubeboot.tasks.fsutil import atomic_write
    from kubeboot.workers.redis_acl import acl_text, new_password, user_url

    if not address.startswith(("redis://", "rediss://")) or "@" in address:
        fail(f"--redis {address}: give rediss://host:port (no user or password)", BAD_INPUT)
    for worker in nodes:
        _check_worker(worker)
    out = Path(directory)
    users = [("control", "control", ""), ("flower", "flower", "")]
    users += [(f"node-{w}", "node", w) for w in nodes]
    rows = []
    for name, role, worker in users:
        url_file = out / f"{name}.url"
        password = unquote(urlsplit(url_file.read_text().strip()).password or "") if url_file.exists() else ""
        password = password or new_password()
        atomic_write(url_file, user_url(address, name, password) + "\n", 0o600, dir_mode=0o700)
        rows.append((name, role, password, worker))
    atomic_write(out / "users.acl", acl_text(rows), 0o600, dir_mode=0o700)
    click.echo(f"[deploy] wrote {out / 'users.acl'} and {len(rows)} URL files ({', '.join(r[0] for r in rows)})")


def _check_worker(worker: str) -> None:
    import re

    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", worker):
        fail(f"--id {worker}: a node worker id is a DNS name (lower-case letters, digits, '-', '.')", BAD_INPUT)
