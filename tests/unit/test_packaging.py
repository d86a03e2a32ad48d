"""The top-level folders install under one import name: ``kubeboot.config``, ``kubeboot.tasks``, ...

A tool never puts modules called ``config`` or ``tasks`` into site-packages, where they would collide with
any other package of those names. These tests look at the installed package, from a directory that is
not the source tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("config", "tasks", "workflows", "workers", "sandbox")


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"kubeboot." + ".".join(init.parent.relative_to(ROOT).parts)
             for folder in FOLDERS for init in (ROOT / folder).rglob("__init__.py")}
    assert found == listed


@pytest.mark.parametrize("name", FOLDERS)
def test_a_bare_top_level_name_is_not_importable(name: str, tmp_path: Path) -> None:
    done = _python(f"import {name}", tmp_path)
    assert done.returncode != 0
    assert "ModuleNotFoundError" in done.stderr


@pytest.mark.parametrize("name", FOLDERS)
def test_each_folder_imports_under_kubeboot(name: str, tmp_path: Path) -> None:
    done = _python(f"import kubeboot.{name} as m; print(m.__name__)", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"kubeboot.{name}"


def test_the_cli_runs_as_a_module(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "kubeboot.workers.cli", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "submit" in done.stdout


def test_celery_finds_the_app_by_its_installed_name(tmp_path: Path) -> None:
    celery = Path(sys.executable).with_name("celery")
    exe = str(celery) if celery.exists() else shutil.which("celery")
    assert exe, "the celery command is installed with kubeboot"
    done = subprocess.run([exe, "-A", "kubeboot.workers.celery_app", "report"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "task_default_queue: 'control'" in done.stdout  # kubeboot's app, not Celery's default
