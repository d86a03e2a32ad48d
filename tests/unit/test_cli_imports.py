"""The CLI starts fast: importing it (and listing the phase tree) pulls in nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("cryptography", "pydantic", "yaml", "kubernetes", "celery", "redis", "kubeboot.tasks.phases")


def modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_importing_the_cli_imports_no_heavy_module() -> None:
    assert heavy_in(modules_after("import kubeboot.workers.cli")) == []


def test_rendering_the_phase_tree_help_imports_no_heavy_module() -> None:
    modules = modules_after("import kubeboot.workers.cli\nkubeboot.workers.cli._phase_tree_help()")
    assert "kubeboot.workflows.init_tree" in modules
    assert heavy_in(modules) == []
