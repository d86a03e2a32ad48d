"""``kubeboot init phase``: load the config, build the node context, run the selected steps.

Kept apart from the click wiring so the demo and the benchmarks call the same function.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubeboot.tasks.kubelet import KubeletDriver


def _load(config_file: str | None, node: str | None, patches: str | None) -> object:
    from kubeboot.config.loader import build_init_config, load_init_config

    docs_cfg = load_init_config(config_file) if config_file else build_init_config([])
    init = docs_cfg.init
    if node:
        init.nodeRegistration.name = node
    if patches:
        from kubeboot.config.models import Patches

        init.patches = Patches(directory=patches)
    return docs_cfg


def run_init_phase(
    *,
    path: str,
    config_file: str | None,
    root: str,
    node: str | None = None,
    skip: list[str] | None = None,
    ignore: list[str] | None = None,
    patches: str | None = None,
    kubelet_driver: str = "none",
    upload_certs: bool = False,
    out: Callable[[str], None] | None = None,
) -> tuple[int, str]:
    """Run ``path`` against ``root``; (exit code, one-line message) — 0 / 1 failed / 2 bad input."""
    from pydantic import ValidationError

    from kubeboot.config.errors import ConfigError
    from kubeboot.config.resolved import InitConfig
    from kubeboot.tasks.fsutil import NodeFS
    from kubeboot.tasks.phases.context import NodeContext
    from kubeboot.workflows.local import PhaseFailedError, plan_init, run_steps
    from kubeboot.workflows.selection import UnknownPhaseError

    try:
        cfg = _load(config_file, node, patches)
        assert isinstance(cfg, InitConfig)
        if patches and not Path(patches).is_dir():
            raise ConfigError("patches directory does not exist", field="--patches", file=patches)
        steps = plan_init(cfg, path, skip, upload_certs=upload_certs)
    except ConfigError as e:
        return 2, str(e)
    except ValidationError as e:
        return 2, f"--node: {e.errors()[0]['msg'].removeprefix('Value error, ')}"
    except UnknownPhaseError as e:
        return 2, str(e)

    ctx = NodeContext(
        cfg=cfg,
        fs=NodeFS(root),
        ignore_preflight_errors=frozenset(ignore or []),
        kubelet=_kubelet(kubelet_driver),
    )
    if out is not None:
        ctx.out = out
    try:
        run_steps(steps, ctx)
    except PhaseFailedError as e:
        return 1, str(e)
    return 0, ""


def _kubelet(name: str) -> KubeletDriver | None:
    if name == "systemd":
        from kubeboot.tasks.kubelet import SystemdKubelet

        return SystemdKubelet()
    return None
