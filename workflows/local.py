"""Running init phases in this process, with no broker: ``kubeboot init phase <path>``.

The same steps the Celery canvas will run, executed one after another against one node root.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubeboot.workflows.init_tree import INIT_PHASES, LOCAL_PHASES, UPLOAD_CERTS
from kubeboot.workflows.selection import Step, select

if TYPE_CHECKING:
    from kubeboot.config.resolved import InitConfig
    from kubeboot.tasks.phases.context import NodeContext, PhaseContext


LOCAL = "local"  # the target that runs LOCAL_PHASES


class PhaseFailedError(Exception):
    """A phase raised a PhaseError; ``path`` says which (kubeadm: 'error execution phase X')."""

    def __init__(self, path: str, cause: Exception) -> None:
        self.path = path
        self.cause = cause
        super().__init__(f"error execution phase {path}: {cause}")


@dataclass(frozen=True)
class LocalResult:
    ran: list[str]
    skipped: list[tuple[str, str]]


def plan_init(
    cfg: InitConfig, target: str = "all", skip: list[str] | None = None, *, upload_certs: bool = False
) -> list[Step]:
    """The init steps for ``target``: config's skipPhases + ``skip`` skipped; upload-certs only when
    asked for (kubeadm's ``--upload-certs``). ``local`` is every phase of LOCAL_PHASES."""
    skips = list(cfg.init.skipPhases) + list(skip or [])
    drop = {} if upload_certs else {UPLOAD_CERTS: "--upload-certs not given"}
    if target.strip("/") == LOCAL:
        steps = select(INIT_PHASES, "init", cfg, "all", skips, drop)
        return [s for s in steps if s.path.split("/")[0] in LOCAL_PHASES]
    return select(INIT_PHASES, "init", cfg, target, skips, drop)


def run_steps(
    steps: list[Step], ctx: NodeContext, on_skip: Callable[[Step], None] | None = None
) -> LocalResult:
    ran: list[str] = []
    skipped: list[tuple[str, str]] = []
    for step in steps:
        if step.skip_reason:
            # report only the root of a skipped subtree, not each of its children
            if on_skip and not any(step.placed.parent_path == p for p, _ in skipped):
                on_skip(step)
            skipped.append((step.path, step.skip_reason))
            continue
        if step.placed.phase.action is None:
            continue
        _run_with_retries(step, _context_for(step, ctx))
        ran.append(step.path)
    return LocalResult(ran, skipped)


def _run_with_retries(step: Step, ctx: PhaseContext) -> None:
    """Run one phase; a TemporaryError waits its delay and tries again, as the task's retry would,
    up to the phase's attempt ceiling."""
    from kubeboot.tasks.errors import PhaseError, TemporaryError
    from kubeboot.tasks.retry import MAX_ATTEMPTS, backoff

    fn = step.placed.phase.resolve()
    ceiling = step.placed.phase.max_attempts or MAX_ATTEMPTS
    for attempt in range(1, ceiling + 1):
        try:
            fn(ctx, *step.placed.phase.args)
            return
        except TemporaryError as e:
            if attempt == ceiling:
                raise PhaseFailedError(step.path, e) from e
            time.sleep(backoff(attempt, e.delay))
        except PhaseError as e:
            raise PhaseFailedError(step.path, e) from e


def _context_for(step: Step, ctx: NodeContext) -> PhaseContext:
    """Control phases run in process get a ControlContext sharing this run's secrets and scratch;
    the admin kubeconfigs the node holds stand in for what the kubeconfig phase would have shared."""
    if step.placed.phase.target != "control":
        return ctx
    from kubeboot.config import constants as c
    from kubeboot.tasks.phases.context import ControlContext

    for name in (c.ADMIN_CONF, c.SUPER_ADMIN_CONF):
        data = ctx.fs.read_bytes(f"{c.KUBERNETES_DIR}/{name}")
        if data is not None and ctx.secrets.get(name) is None:
            ctx.secrets.put(name, data)
    return ControlContext(ctx.cfg, ctx.cfg.node_name, out=ctx.out, now=ctx.now, secrets=ctx.secrets,
                          scratch=ctx.scratch, address_map=ctx.address_map, show_secrets=ctx.show_secrets)
