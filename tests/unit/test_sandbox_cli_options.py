"""``kubeboot sandbox up`` node roles on the command line: bad combinations are bad input (exit 2, one line),
refused before anything starts."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kubeboot.workers.cli_sandbox import sandbox_group


@pytest.mark.parametrize(("args", "message"), [
    (["--nodes", "2", "--workers", "1"], "--nodes is a shorthand for --control-planes 1 --workers N-1"),
    (["--nodes", "2", "--control-planes", "3"], "--nodes is a shorthand for --control-planes 1 --workers N-1"),
    (["--nodes", "0"], "--nodes must be at least 1"),
    (["--control-planes", "0"], "--control-planes and --clusters must be at least 1, --workers at least 0"),
    (["--workers", "-1"], "--control-planes and --clusters must be at least 1, --workers at least 0"),
    (["--clusters", "0"], "--control-planes and --clusters must be at least 1, --workers at least 0"),
    (["--control-planes", "200", "--workers", "54"], "at most 253 nodes per cluster"),
], ids=["nodes with workers", "nodes with control planes", "no nodes", "no control plane", "negative workers",
        "no cluster", "more nodes than addresses"])
def test_bad_node_roles_are_bad_input_before_anything_starts(args: list[str], message: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEBOOT_REDIS_URL", "redis://127.0.0.1:1/0")  # never reached: refused before
    result = CliRunner().invoke(sandbox_group, ["up", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
