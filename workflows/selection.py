"""Phase selection with kubeadm's path semantics.

``select(...)`` turns a tree, a target path (``certs``, ``certs/apiserver``, ``certs/all`` or ``all``)
and ``--skip-phases`` into the ordered list of steps to run or skip. Skipping a parent skips its
subtree; a phase whose condition is false for this config is dropped with the condition's reason;
running a leaf runs only the leaf (not its parent's action), as ``kubeadm init phase certs apiserver``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubeboot.workflows.phase import Phase, PlacedPhase, walk

if TYPE_CHECKING:
    from kubeboot.config.resolved import InitConfig


class UnknownPhaseError(ValueError):
    """A phase path that is not in the tree (bad input: exit 2)."""


@dataclass(frozen=True)
class Step:
    placed: PlacedPhase
    skip_reason: str = ""  # empty: run it

    @property
    def path(self) -> str:
        return self.placed.path

    @property
    def runs_action(self) -> bool:
        return not self.skip_reason and self.placed.phase.action is not None


def paths(roots: tuple[Phase, ...], workflow: str) -> list[str]:
    return [p.path for p in walk(roots, workflow)]


def normalize(path: str) -> str:
    """``certs/all`` and ``certs/`` mean ``certs``; ``all`` and ``""`` mean everything."""
    path = path.strip().strip("/")
    if path in ("", "all"):
        return ""
    return path.removesuffix("/all")


def check_paths(roots: tuple[Phase, ...], workflow: str, names: list[str], what: str) -> None:
    known = set(paths(roots, workflow))
    for name in names:
        if normalize(name) and normalize(name) not in known:
            raise UnknownPhaseError(
                f"{what}: unknown phase {name!r}; valid phases: {', '.join(sorted(known))}"
            )


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def select(
    roots: tuple[Phase, ...],
    workflow: str,
    cfg: InitConfig,
    target: str = "all",
    skip: list[str] | None = None,
    drop: dict[str, str] | None = None,
) -> list[Step]:
    """The ordered steps for ``target`` with ``skip`` applied and the ``drop`` paths (path → reason)
    left out by run options; UnknownPhaseError for a bad path."""
    skip = [normalize(s) for s in (skip or [])]
    check_paths(roots, workflow, [target], "phase")
    check_paths(roots, workflow, skip, "skip-phases")
    want = normalize(target)
    steps: list[Step] = []
    dropped: dict[str, str] = {}  # subtree root -> reason
    for placed in walk(roots, workflow):
        if want and not _under(placed.path, want):
            continue
        reason = next((r for root, r in dropped.items() if _under(placed.path, root)), "")
        if not reason and any(s and _under(placed.path, s) for s in skip):
            reason = "skipped by --skip-phases / skipPhases"
        if not reason and drop and placed.path in drop:
            reason = drop[placed.path]
        cond = placed.phase.condition
        if not reason and cond is not None and not cond(cfg):
            reason = placed.phase.skip_reason or "not needed for this configuration"
        if reason:
            dropped.setdefault(placed.path, reason)
        steps.append(Step(placed, reason))
    return steps
