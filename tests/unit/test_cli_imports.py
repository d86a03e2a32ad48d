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


def test_cli_command_modules_import_only_the_common_module() -> None:
    """workers/cli_*.py import no other command module (no cycle): shared helpers live in cli_common."""
    import ast
    from pathlib import Path

    workers = Path(__file__).resolve().parents[2] / "workers"
    found: dict[str, set[str]] = {}
    for path in sorted(workers.glob("cli*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        found[path.stem] = {n.rsplit(".", 1)[-1] for n in names if n.startswith("kubeboot.workers.cli")}
    assert set(found) >= {"cli", "cli_common", "cli_runs", "cli_workers", "cli_sandbox"}
    assert found.pop("cli_common") == set()
    commands = {stem for stem in found if stem != "cli"}
    assert found.pop("cli") == {"cli_common", *commands}
    assert {stem: deps for stem, deps in found.items() if deps - {"cli_common"}} == {}
