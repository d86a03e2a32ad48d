"""The narrow context every node-local phase receives.

A phase function is ``def run(ctx: NodeContext) -> None``: it reads ``ctx.cfg``, reads and writes
only through ``ctx.fs`` (the node root), prints kubeadm-style lines through ``ctx.out`` and raises
``PhaseError`` subclasses for problems a person must fix. It never imports celery, redis or workers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from config.resolved import InitConfig
from tasks.errors import PermanentError, PhaseError, TemporaryError
from tasks.fsutil import NodeFS

__all__ = ["NodeContext", "PermanentError", "PhaseError", "TemporaryError"]

if TYPE_CHECKING:
    from tasks.kubelet import KubeletDriver


def _print(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


@dataclass
class NodeContext:
    cfg: InitConfig
    fs: NodeFS
    out: Callable[[str], None] = _print
    # Start time of the run: certificate notBefore is this minus the 5-minute backdate.
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    kubelet: KubeletDriver | None = None
    # Preflight check names to treat as warnings ("all" ignores everything).
    ignore_preflight_errors: frozenset[str] = frozenset()
    # Parallelism for independent key generation (key generation releases the GIL).
    workers: int = 2
    # Per-run scratch space shared by the phases of one in-process run (e.g. keys generated
    # ahead in parallel by the certs parent phase). Never required: a phase run alone recomputes.
    scratch: dict[str, Any] = field(default_factory=dict)
    # Loopback names → the node's own address, when simulated nodes share one host: a health check
    # of "127.0.0.1:10257" on such a node goes to its address instead (a node runtime setting).
    address_map: dict[str, str] = field(default_factory=dict)

    def map_address(self, host: str) -> str:
        return self.address_map.get(host.strip("[]"), host)

    def log(self, phase: str, message: str) -> None:
        self.out(f"[{phase}] {message}")
