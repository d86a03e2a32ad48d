"""``celery -A kubeboot.workers.celery_app ...``: a worker started this way must name its role; the other
commands load the app as a client. Runs the installed ``celery`` command; no Redis is reached (the URL
names a port nothing listens on, and neither path connects)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

APP = "kubeboot.workers.celery_app"


def celery(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("celery")
    command = str(exe) if exe.exists() else shutil.which("celery")
    assert command, "the celery command is installed with kubeboot"
    base = {k: v for k, v in os.environ.items() if not k.startswith("KUBEBOOT_")}
    base.update(KUBEBOOT_REDIS_URL="redis://127.0.0.1:9/0", KUBEBOOT_STATE_DIR=str(tmp_path / "state"), **env)
    return subprocess.run([command, "-A", APP, *args], cwd=tmp_path, env=base, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(("env", "message"), [
    ({}, "error: celery worker: KUBEBOOT_WORKER_ROLE is not set (node or control)"),
    ({"KUBEBOOT_WORKER_ROLE": "nodes"}, "error: KUBEBOOT_WORKER_ROLE=nodes: expected node or control"),
    ({"KUBEBOOT_WORKER_ROLE": "node"}, "error: KUBEBOOT_WORKER_ROLE=node: KUBEBOOT_WORKER_NODE_ID must name"),
], ids=["role unset", "unknown role", "node role without its node"])
def test_a_celery_worker_without_a_valid_role_exits_2_with_one_line(tmp_path: Path, env, message: str) -> None:
    done = celery(tmp_path, "worker", "-Q", "node.cp1", **env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "state").exists()  # stopped before any key, Redis or state was made


@pytest.mark.parametrize(("env", "remote_control"), [
    ({}, "True"),  # a client: inspect, report, events
    ({"KUBEBOOT_WORKER_ROLE": "node", "KUBEBOOT_WORKER_NODE_ID": "cp1"}, "False"),
    ({"KUBEBOOT_WORKER_ROLE": "control"}, "True"),
], ids=["no role: client", "node", "control"])
def test_other_commands_load_the_app_with_the_role_given_or_as_a_client(tmp_path: Path, env,
                                                                       remote_control: str) -> None:
    done = celery(tmp_path, "report", **env)
    assert done.returncode == 0, done.stderr
    assert f"worker_enable_remote_control: {remote_control}" in done.stdout
    assert "task_default_queue: 'control'" in done.stdout  # kubeboot's app
