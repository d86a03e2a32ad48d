"""``python -m kubeboot.sandbox.supervise --dir DIR``: keeps a sandbox's processes running, as systemd's
``Restart=always`` keeps a machine's services running.

Reads: ``DIR/supervise.json``, the units (``kubeboot sandbox up`` writes it; the sandbox package does not
know how a node worker is started, so each command unit comes with its command line)::

    {"units": [{"name": "control-worker", "argv": ["python", "-m", ...], "log": "DIR/logs/control-worker.log"},
               {"name": "kubelet-sb1-cp1", "kubelet": {"root": "...", "node": "sb1-cp1", "address": "127.77.0.1"}}]}

Writes: ``DIR/supervise-state.json`` on every change (atomically)::

    {"pid": <this process>, "units": {"<name>": {"pid": 1234, "restarts": 0, "active": true}}}

and its log on stderr (the sandbox's ``logs/supervise.log``), in systemd's words.

Two kinds of unit:
- a **command** (the control worker, a node worker, a load balancer) runs as a child of the supervisor,
  in its own session, output appended to its log. When its main process exits, what is left of its
  process group is killed (systemd's ``KillMode=control-group``: a Celery worker's pool children), and
  it is started again.
- a node's **sandbox kubelet** is started through its driver (``sandbox.kubelet.driver``) and watched
  through its pid file, since kubelet-start and kubelet-finalize restart it too (``systemctl restart
  kubelet``). One stopped on purpose (``SandboxKubelet.stop`` leaves a mark, as ``systemctl stop``
  leaves a unit inactive) stays stopped until something starts it.

``stop_unit`` is ``systemctl stop`` for a command unit: it marks the unit stopped on purpose
(``DIR/stopped/<unit>``) and ends its process group; the supervisor leaves it dead until ``start_unit``
removes the mark (a test replacing the control worker by one of its own does that).

A dead unit restarts after ``RESTART_SEC``, doubled for each start that lived less than ``STABLE_SEC``, up
to ``MAX_RESTART_SEC``. On SIGTERM the supervisor exits and leaves its units running: ``sandbox down``
stops it first, then everything it ran, so nothing is restarted behind ``down``'s back.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeboot.tasks.fsutil import atomic_write

SPEC_FILE = "supervise.json"
STATE_FILE = "supervise-state.json"
STOPPED_DIR = "stopped"
POLL_SEC = 0.2
RESTART_SEC = 1.0
MAX_RESTART_SEC = 10.0
STABLE_SEC = 10.0
log = logging.getLogger("supervise")


def exit_text(code: int) -> str:
    """systemd's words for how a main process ended: ``code=exited, status=1/FAILURE`` or ``code=killed, ...``."""
    if code < 0:
        try:
            name = signal.Signals(-code).name.removeprefix("SIG")
        except ValueError:
            name = str(-code)
        return f"code=killed, status={-code}/{name}"
    return f"code=exited, status={code}/{'SUCCESS' if code == 0 else 'FAILURE'}"


@dataclass
class Unit:
    """One supervised thing; subclasses say how it starts and how its death is seen."""

    name: str
    restarts: int = 0
    started_at: float = 0.0
    due: float | None = None  # when a pending restart is due (monotonic), None when none is pending
    delay: float = RESTART_SEC

    @property
    def service(self) -> str:
        return f"{self.name}.service"

    def start(self) -> None:
        raise NotImplementedError

    def pid(self) -> int:
        raise NotImplementedError

    def died(self) -> str | None:
        """How the unit ended when it is dead and should run (None while it runs or rests on purpose)."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """What is left of a dead unit, killed before it starts again."""

    def state(self) -> dict[str, Any]:
        pid = self.pid()
        return {"pid": pid, "restarts": self.restarts, "active": self.due is None and pid > 0 and self.died() is None}


@dataclass
class CommandUnit(Unit):
    argv: list[str] = field(default_factory=list)
    log_file: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        Path(self.log_file).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, close_fds=True)

    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def died(self) -> str | None:
        if self.proc is None:
            return "not started"
        code = self.proc.poll()
        return None if code is None else f"Main process exited, {exit_text(code)}"

    def cleanup(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class KubeletUnit(Unit):
    root: str = ""
    node: str = ""
    address: str = ""
    last_pid: int = 0
    proc: subprocess.Popen[bytes] | None = None  # the daemon this supervisor started, while it starts up

    def _driver(self) -> Any:
        from kubeboot.sandbox.kubelet.driver import SandboxKubelet

        return SandboxKubelet(self.root, self.node, self.address)

    def start(self) -> None:
        self.proc = self._driver().launch()

    def pid(self) -> int:
        pid = self._driver().daemon_pid()
        if pid:
            self.last_pid = pid
            if self.proc is not None and self.proc.pid != pid:
                self.proc = None  # restarted by someone else (kubelet-start): ours is history
        elif self.proc is not None and self.proc.poll() is None:
            return self.proc.pid  # started, its pid file not written yet
        return int(pid or 0)

    def died(self) -> str | None:
        driver = self._driver()
        if (self.pid() and self.proc is None) or driver.stopped_on_purpose() or driver.starting_pid():
            return None
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                return None  # still starting up
            return f"Main process exited, {exit_text(code)}"
        return f"Main process {self.last_pid} is gone" if self.last_pid else "not running"


def load_units(directory: Path) -> list[Unit]:
    spec = json.loads((directory / SPEC_FILE).read_text())
    units: list[Unit] = []
    for raw in spec["units"]:
        if "kubelet" in raw:
            k = raw["kubelet"]
            units.append(KubeletUnit(raw["name"], root=k["root"], node=k["node"], address=k["address"]))
        else:
            units.append(CommandUnit(raw["name"], argv=list(raw["argv"]), log_file=raw["log"]))
    return units


class Supervisor:
    def __init__(self, directory: Path, units: list[Unit]) -> None:
        self.dir = directory
        self.units = units
        self._last_state: dict[str, Any] = {}

    def start_all(self, now: float) -> None:
        for unit in self.units:
            self._start(unit, now)
        self.save()

    def _start(self, unit: Unit, now: float) -> None:
        unit.start()
        unit.started_at, unit.due = now, None
        log.info("Started %s (pid %d).", unit.service, unit.pid())

    def tick(self, now: float) -> None:
        """One pass: notice deaths, schedule restarts with backoff, start those due."""
        for unit in self.units:
            if (self.dir / STOPPED_DIR / unit.name).exists():
                unit.due = None  # stopped on purpose: inactive until started again
                continue
            if unit.due is None:
                how = unit.died()
                if how is None:
                    continue
                quick = unit.restarts and now - unit.started_at < STABLE_SEC
                unit.delay = min(MAX_RESTART_SEC, unit.delay * 2) if quick else RESTART_SEC
                unit.due = now + unit.delay
                log.warning("%s: %s", unit.service, how)
                unit.cleanup()
                log.info("%s: Scheduled restart job in %.1fs, restart counter is at %d.", unit.service, unit.delay,
                         unit.restarts + 1)
            elif now >= unit.due:
                unit.restarts += 1
                if unit.died() is None:  # started meanwhile by someone else (kubelet-start)
                    unit.due = None
                    log.info("%s: running again (pid %d), nothing to start.", unit.service, unit.pid())
                else:
                    self._start(unit, now)
        self.save()

    def save(self) -> None:
        state = {"pid": os.getpid(), "units": {u.name: u.state() for u in self.units}}
        if state != self._last_state:
            atomic_write(self.dir / STATE_FILE, json.dumps(state, indent=2) + "\n")
            self._last_state = state

    def run(self, stop: threading.Event) -> None:
        self.start_all(time.monotonic())
        while not stop.wait(POLL_SEC):
            self.tick(time.monotonic())
        log.info("Stopping the supervisor; units are left running.")


def stop_unit(directory: Path, name: str, sig: int = signal.SIGTERM) -> int:
    """``systemctl stop``: mark the unit stopped on purpose, then send ``sig`` to its process group; its pid."""
    marks = directory / STOPPED_DIR
    marks.mkdir(parents=True, exist_ok=True)
    (marks / name).touch()
    pid = int(((read_state(directory).get("units") or {}).get(name) or {}).get("pid") or 0)
    if pid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
    return pid


def start_unit(directory: Path, name: str) -> None:
    """``systemctl start`` of a unit ``stop_unit`` stopped: the supervisor starts it on its next pass."""
    (directory / STOPPED_DIR / name).unlink(missing_ok=True)


def read_state(directory: Path) -> dict[str, Any]:
    """The supervisor's last state file (empty when it never ran)."""
    try:
        return dict(json.loads((directory / STATE_FILE).read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubeboot.sandbox.supervise", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", required=True, type=Path, help=f"the sandbox directory (with {SPEC_FILE})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s [supervise] %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Supervisor(args.dir, load_units(args.dir)).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
