"""The narrow contexts phases receive.

A phase function is ``def run(ctx: NodeContext) -> None`` (node-local phases: files under the node
root, the kubelet) or ``def run(ctx: ControlContext) -> None`` (API phases run by the control worker).
It reads ``ctx.cfg``, writes files only through ``ctx.fs``, prints kubeadm-style lines through
``ctx.out``, keeps what later phases need (tokens, the certificate key, the admin kubeconfig) in
``ctx.secrets`` and raises ``PhaseError`` subclasses for problems a person must fix. It never imports
celery, redis or workers.

``ctx.secrets`` is the run's secret store: encrypted in the run state when phases run as Celery
tasks, a dict for the life of the process when they run in process (``kubeboot init phase``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from kubeboot.config import constants as c
from kubeboot.config.resolved import InitConfig
from kubeboot.tasks.errors import PermanentError, PhaseError, TemporaryError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.redaction import redact

__all__ = [
    "ControlContext", "MemorySecrets", "NodeContext", "PermanentError", "PhaseContext", "PhaseError",
    "SecretsHandle", "TemporaryError",
]

if TYPE_CHECKING:
    from kubeboot.tasks.kubelet import KubeletDriver


def _print(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


class SecretsHandle(Protocol):
    """The run's secrets: what one phase produces and a later one (maybe on another worker) needs."""

    def put(self, name: str, value: bytes) -> None: ...

    def get(self, name: str) -> bytes | None: ...


class MemorySecrets:
    """Secrets of an in-process run: gone when the process ends, like kubeadm's own variables."""

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}

    def put(self, name: str, value: bytes) -> None:
        self._values[name] = value

    def get(self, name: str) -> bytes | None:
        return self._values.get(name)

    def __repr__(self) -> str:
        return f"MemorySecrets({sorted(self._values)})"  # names only, never values


@dataclass
class PhaseContext:
    cfg: InitConfig
    # Everything but the config is passed by keyword (subclasses add positional ``fs``/``node``).
    _: KW_ONLY
    out: Callable[[str], None] = _print
    # Start time of the run: certificate notBefore is this minus the 5-minute backdate.
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    secrets: SecretsHandle = field(default_factory=MemorySecrets)
    # Parallelism for independent key generation (key generation releases the GIL).
    workers: int = 2
    # Per-run scratch space shared by the phases of one in-process run (e.g. keys generated
    # ahead in parallel by the certs parent phase). Never required: a phase run alone recomputes.
    scratch: dict[str, Any] = field(default_factory=dict)
    # Loopback names → the node's own address, when simulated nodes share one host: a health check
    # of "127.0.0.1:10257" on such a node goes to its address instead (a node runtime setting).
    address_map: dict[str, str] = field(default_factory=dict)
    # True when ``out`` is the terminal of the person who ran the phase (``kubeboot init phase``):
    # tokens and keys are printed whole, as kubeadm prints them. A phase run as a task prints to the
    # worker's log, which is shipped and kept: there they show redacted (``tasks.redaction``).
    show_secrets: bool = True

    def map_address(self, host: str) -> str:
        return self.address_map.get(host.strip("[]"), host)

    def log(self, phase: str, message: str) -> None:
        self.out(f"[{phase}] {message}")

    def shown(self, text: str) -> str:
        """``text`` holding a secret, as ``out`` may print it: whole on a terminal, redacted in a log."""
        return text if self.show_secrets else redact(text)

    def kubeconfig(self, name: str) -> bytes | None:
        """A kubeconfig file's bytes (``admin.conf`` ...), as far as this context can see it."""
        return self.secrets.get(name)


@dataclass
class NodeContext(PhaseContext):
    """Node-local phases: ``fs`` is the node root; ``kubelet`` drives the node's kubelet."""

    fs: NodeFS
    _: KW_ONLY
    kubelet: KubeletDriver | None = None
    # Preflight check names to treat as warnings ("all" ignores everything).
    ignore_preflight_errors: frozenset[str] = frozenset()

    def kubeconfig(self, name: str) -> bytes | None:
        """On the node the file itself is authoritative; the run's copy is the fallback."""
        data = self.fs.read_bytes(f"{c.KUBERNETES_DIR}/{name}")
        return data if data is not None else self.secrets.get(name)


@dataclass
class ControlContext(PhaseContext):
    """API phases run by the control worker: no node root; credentials come from ``secrets``."""

    node: str  # the node the run bootstraps (the init node)
