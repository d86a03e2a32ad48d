"""What `status` and `--watch` print never holds a secret; the join commands appear in `-o json` only when
asked for, one command per entry."""

from __future__ import annotations

import json

import pytest

from kubeboot.tasks.phases.showjoin import init_done_text, join_command
from kubeboot.tasks.state.records import Event, PhaseRecord, RunRecord
from kubeboot.workers.progress import event_line, join_commands, render_table, status_json

TOKEN = "q7x2kd.m4v9t1z8r3p6w0yb"
KEY = "3f1c2a9be0d4475c8a61f0e2b9d3c7a45e6f8091b2c3d4e5f60718293a4b5c6d"
HASH = "sha256:" + "ab" * 32
CP = f"kubeadm join cp:6443 --token {TOKEN} --discovery-token-ca-cert-hash {HASH} --control-plane " \
     f"--certificate-key {KEY}"
WORKER = f"kubeadm join cp:6443 --token {TOKEN} --discovery-token-ca-cert-hash {HASH}"


def run(error: str | None = None) -> RunRecord:
    return RunRecord(id="r-1", kind="init", cluster="demo", spec_digest="d" * 64, status="failed",
                     created="2026-01-01T00:00:00.000Z", started=None, finished=None, error=error,
                     nodes=("cp1",), plan=(("cp1", "bootstrap-token"),))


def phase(last_error: str) -> PhaseRecord:
    return PhaseRecord(node="cp1", path="bootstrap-token", status="failed", attempts=2, worker="w", started=None,
                       finished=None, delayed=None, last_error=last_error)


def text(cpe: bool, upload: bool) -> str:
    return init_done_text(
        control_plane_endpoint=cpe, upload_certs=upload,
        cp_command=join_command("cp:6443", TOKEN, [HASH], control_plane=True, certificate_key=KEY if upload else ""),
        worker_command=join_command("cp:6443", TOKEN, [HASH]))


@pytest.mark.parametrize(("cpe", "upload", "expected"), [
    pytest.param(True, True, [("control-plane", CP), ("worker", WORKER)], id="with uploaded certificates"),
    pytest.param(True, False, [("control-plane", WORKER + " --control-plane"), ("worker", WORKER)],
                 id="control-plane endpoint, certificates copied by hand"),
    pytest.param(False, True, [("worker", WORKER)], id="no control-plane endpoint: workers only"),
])
def test_the_join_commands_are_read_from_kubeadms_text_one_line_each(cpe: bool, upload: bool,
                                                                      expected: list[tuple[str, str]]) -> None:
    assert join_commands(text(cpe, upload)) == [{"role": r, "command": c} for r, c in expected]


def test_every_token_of_the_run_gives_its_own_commands() -> None:
    other = "abcdef.0123456789abcdef"
    twice = text(True, True) + text(True, True).replace(TOKEN, other)
    assert [c["command"].split()[4] for c in join_commands(twice)] == [TOKEN, TOKEN, other, other]


def test_status_json_has_join_commands_only_when_asked() -> None:
    without = json.loads(status_json(run(), [], "http://flower"))
    assert {"run", "phases", "flower"} <= set(without) and "joinCommands" not in without
    with_join = json.loads(status_json(run(), [], "http://flower", join_commands(text(True, True))))
    assert with_join["joinCommands"] == [{"role": "control-plane", "command": CP},
                                         {"role": "worker", "command": WORKER}]
    assert json.loads(status_json(run(), [], "http://flower", []))["joinCommands"] == []


def test_the_table_and_the_event_lines_show_no_secret() -> None:
    table = render_table(run(error=f"phase bootstrap-token: {TOKEN}"), [phase(f"--certificate-key {KEY}")], "url")
    assert "error: phase bootstrap-token: q7x2kd.<redacted>" in table
    assert "--certificate-key <redacted>" in table
    lines = [event_line(Event(id="1-0", ts="2026-01-01T00:00:00.000Z", node=node, phase=path, event=ev, attempt=1,
                              message=f"Using token: {TOKEN}")) for node, path, ev in
             (("cp1", "bootstrap-token", "retry"), ("", "", "failed"))]
    assert lines == ["00:00:00.000  [cp1] bootstrap-token retry: Using token: q7x2kd.<redacted>",
                     "00:00:00.000  run failed: Using token: q7x2kd.<redacted>"]
    assert not any(TOKEN in x or KEY in x for x in [table, *lines])
