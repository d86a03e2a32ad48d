"""The sandbox's supervisor (sandbox.supervise) on small real processes, its clock driven by the test:
a command unit that dies is seen, what is left of its process group is killed, it is started again after
the backoff (doubling while it keeps dying quickly), and the state file and log say so in systemd's words."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeboot.sandbox.supervise import (
    MAX_RESTART_SEC,
    RESTART_SEC,
    STABLE_SEC,
    STATE_FILE,
    CommandUnit,
    Supervisor,
    exit_text,
    load_units,
    read_state,
    start_unit,
    stop_unit,
)

# A main process that starts a child in its own process group, then sleeps: a Celery worker in small.
PARENT = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
          "print('child started', flush=True); time.sleep(60)")


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    unit = CommandUnit("worker", argv=[sys.executable, "-c", PARENT], log_file=str(tmp_path / "worker.log"))
    sup = Supervisor(tmp_path, [unit])
    try:
        yield sup
    finally:
        unit.cleanup()


def wait_until(what: str, ready: object, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while not ready():  # type: ignore[operator]
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def group(pgid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.add(int(stat.parent.name))
    return found


def unit_of(sup: Supervisor) -> CommandUnit:
    unit = sup.units[0]
    assert isinstance(unit, CommandUnit)
    return unit


@pytest.mark.parametrize(("code", "text"), [
    (0, "code=exited, status=0/SUCCESS"),
    (1, "code=exited, status=1/FAILURE"),
    (-9, "code=killed, status=9/KILL"),
    (-15, "code=killed, status=15/TERM"),
], ids=["clean exit", "failure", "SIGKILL", "SIGTERM"])
def test_exit_in_systemds_words(code: int, text: str) -> None:
    assert exit_text(code) == text


def test_a_killed_unit_is_restarted_after_the_backoff_and_its_leftover_children_are_killed(
        supervisor: Supervisor, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="supervise")
    unit = unit_of(supervisor)
    supervisor.start_all(now=0.0)
    first = unit.pid()
    wait_until("the child of the first start", lambda: len(group(first)) == 2)
    os.kill(first, signal.SIGKILL)
    wait_until("the main process to die", lambda: unit.proc is not None and unit.proc.poll() is not None)

    supervisor.tick(now=100.0)
    assert unit.due == 100.0 + RESTART_SEC
    assert unit.pid() == first  # not restarted before the backoff
    wait_until("the leftover child to be killed", lambda: group(first) == set())
    supervisor.tick(now=100.0 + RESTART_SEC / 2)
    assert unit.pid() == first
    supervisor.tick(now=100.0 + RESTART_SEC)
    assert unit.pid() != first and unit.died() is None
    assert unit.restarts == 1

    lines = [r.getMessage() for r in caplog.records]
    assert "worker.service: Main process exited, code=killed, status=9/KILL" in lines
    assert f"worker.service: Scheduled restart job in {RESTART_SEC:.1f}s, restart counter is at 1." in lines
    assert f"Started worker.service (pid {unit.pid()})." in lines
    state = json.loads((supervisor.dir / STATE_FILE).read_text())
    assert state["units"]["worker"] == {"pid": unit.pid(), "restarts": 1, "active": True}
    assert state["pid"] == os.getpid()


def test_a_unit_that_keeps_dying_quickly_waits_longer_each_time_up_to_the_ceiling(supervisor: Supervisor) -> None:
    unit = unit_of(supervisor)
    supervisor.start_all(now=0.0)
    now, delays = 0.0, []
    for _ in range(6):
        pid = unit.pid()
        os.kill(pid, signal.SIGKILL)
        wait_until("the main process to die", lambda: unit.proc is not None and unit.proc.poll() is not None)
        now += 0.5  # lived half a second
        supervisor.tick(now)
        assert unit.due is not None
        delays.append(unit.due - now)
        now = unit.due
        supervisor.tick(now)
    assert delays == [RESTART_SEC, 2 * RESTART_SEC, 4 * RESTART_SEC, 8 * RESTART_SEC, MAX_RESTART_SEC, MAX_RESTART_SEC]


def test_a_unit_that_ran_long_enough_restarts_after_the_first_backoff_again(supervisor: Supervisor) -> None:
    unit = unit_of(supervisor)
    supervisor.start_all(now=0.0)
    for lived in (0.5, 0.5, STABLE_SEC):
        os.kill(unit.pid(), signal.SIGKILL)
        wait_until("the main process to die", lambda: unit.proc is not None and unit.proc.poll() is not None)
        now = unit.started_at + lived
        supervisor.tick(now)
        assert unit.due is not None
        delay = unit.due - now
        supervisor.tick(unit.due)
    assert delay == RESTART_SEC


def test_units_are_read_from_the_spec_file(tmp_path: Path) -> None:
    (tmp_path / "supervise.json").write_text(json.dumps({"units": [
        {"name": "control-worker", "argv": ["python", "-m", "x"], "log": "/l/control.log"},
        {"name": "kubelet-sb1-cp1", "kubelet": {"root": "/r", "node": "sb1-cp1", "address": "127.77.0.1"}}]}))
    units = load_units(tmp_path)
    assert [(u.name, type(u).__name__) for u in units] == [("control-worker", "CommandUnit"),
                                                            ("kubelet-sb1-cp1", "KubeletUnit")]
    assert read_state(tmp_path) == {}


def test_a_unit_stopped_on_purpose_stays_stopped_until_it_is_started(supervisor: Supervisor) -> None:
    unit = unit_of(supervisor)
    supervisor.start_all(now=0.0)
    first = unit.pid()
    assert stop_unit(supervisor.dir, "worker", signal.SIGKILL) == first
    wait_until("the main process to die", lambda: unit.proc is not None and unit.proc.poll() is not None)
    for now in (10.0, 20.0, 100.0):
        supervisor.tick(now)
    assert unit.pid() == first and unit.restarts == 0 and unit.due is None
    assert read_state(supervisor.dir)["units"]["worker"]["active"] is False
    start_unit(supervisor.dir, "worker")
    supervisor.tick(200.0)
    supervisor.tick(200.0 + RESTART_SEC)
    assert unit.pid() != first and unit.died() is None
