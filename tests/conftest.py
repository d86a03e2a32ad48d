"""What every test shares: its own kubeboot state directory.

A test that runs a kubeboot command without naming a state directory would otherwise use the user's
(``~/.local/state/kubeboot``) and start the embedded Redis there, which outlives the tests. Each test
process gets a fresh directory instead (a test that means the default unsets the variable itself), and
whatever embedded Redis was started in it is stopped when the session ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _own_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if os.environ.get("KUBEBOOT_STATE_DIR"):
        yield
        return
    state = tmp_path_factory.mktemp("state")  # short enough for the Redis unix socket path
    os.environ["KUBEBOOT_STATE_DIR"] = str(state)
    try:
        yield
    finally:
        os.environ.pop("KUBEBOOT_STATE_DIR", None)
        from kubeboot.workers.redis_server import EmbeddedRedis

        EmbeddedRedis(state).stop()
