"""A phase is plain data (kubeadm's workflow.Phase): one tree walk serves running, skipping,
``init phase <path>``, the CLI help and, later, the Celery canvas.

Actions are named as ``"module:function"`` strings and imported only when a phase runs, so listing
the tree (``kubeboot init phase --help``) imports no cryptography, no kubernetes client, no celery.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from kubeboot.config.resolved import InitConfig

Target = Literal["node", "control"]


@dataclass(frozen=True)
class Phase:
    name: str
    help: str
    target: Target = "node"
    # "module:function" called as function(ctx, *args). For a parent it runs before the children.
    action: str | None = None
    args: tuple[str, ...] = ()
    children: tuple[Phase, ...] = ()
    # Evaluated from config when the run is planned; False drops the phase (and its children).
    condition: Callable[[InitConfig], bool] | None = None
    # Why the condition drops it, for "Skipping phase" lines.
    skip_reason: str = ""
    # Starts allowed before the run fails (default tasks.retry.MAX_ATTEMPTS). A phase that waits on
    # the world bounds itself by its own deadline (kubeadm's timeouts) and sets a high ceiling here.
    max_attempts: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def resolve(self) -> Callable[..., None]:
        if self.action is None:
            raise LookupError(f"phase {self.name!r} has no action")
        module, _, func = self.action.partition(":")
        fn: Callable[..., None] = getattr(importlib.import_module(module), func)
        return fn


@dataclass(frozen=True)
class PlacedPhase:
    """A phase at its place in the tree: ``path`` is the public handle (``certs/apiserver``)."""

    path: str
    phase: Phase
    depth: int
    task_name: str

    @property
    def parent_path(self) -> str:
        return self.path.rpartition("/")[0]


def walk(roots: tuple[Phase, ...], workflow: str, prefix: str = "", depth: int = 0) -> Iterator[PlacedPhase]:
    """Depth-first, parents before children: kubeadm's execution order."""
    for ph in roots:
        path = f"{prefix}{ph.name}"
        yield PlacedPhase(path, ph, depth, f"kubeboot.{workflow}.{path.replace('/', '.')}")
        yield from walk(ph.children, workflow, f"{path}/", depth + 1)
