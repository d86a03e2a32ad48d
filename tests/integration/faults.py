"""Fault injection for engine tests, loaded into a real worker with ``kubeboot worker ... --include faults``.

No production hook: ``PhaseTask`` resolves a phase's ``module:function`` with importlib when the phase
runs, so replacing that attribute in the phase module (here, in the worker's main process, before the
pool forks) wraps the phase for every pool child.

``KUBEBOOT_TEST_FAULTS`` holds a JSON list of faults, each naming a phase path of its ``"workflow"``:
``"init"`` (the default), ``"join"``, or ``"*"`` (the path in every workflow that has it):

- ``{"kind": "temporary", "phase": P, "times": N, "counter": FILE}``: raise ``TemporaryError`` the
  first N calls; the call count lives in FILE so it holds across processes and restarts.
- ``{"kind": "barrier", "phase": P, "dir": DIR, "when": "before"|"after"}``: create ``DIR/reached``
  and wait until ``DIR/release`` exists, before or after the phase's own work.
- ``{"kind": "permanent", "phase": P, "flag": FILE}``: raise ``PermanentError`` while FILE exists.
- ``{"kind": "hang", "phase": P}``: never return, not even on the soft time limit (a phase stuck in
  code that swallows it): only the hard time limit ends it.
- ``{"kind": "count", "phase": P | "*", "dir": DIR}``: count every run of the phase's action (of every
  phase's, with ``*``) in ``DIR/<path with / as _>`` (the exactly-once tests read them); with
  ``"per_node": true`` in ``DIR/<workflow>.<node>.<path with / as _>`` (several runs, nodes and workflows).
- ``{"kind": "duplicate-publish"}``: every task message this worker sends (the chain's next link, a
  retry, a recovery re-send) is published twice, as an at-least-once broker may deliver it.
- ``{"kind": "kill-after-success", "phase": P, "flag": FILE, "whole": bool}``: once (FILE records it),
  right after the phase's success is recorded in the run state and before the task returns (so before
  its ack and before the chain's next link is sent), SIGKILL the pool child, or the whole worker.

Any fault may name a ``"node"``: then only that node's phase (the config's node name) is affected.

A ``barrier``, ``permanent``, ``temporary``, ``hang`` or ``count`` fault may give ``"call": "module:function"``
instead of a phase: it then wraps that module-level function, which phases call through their module (a
point inside a phase: ``kubeboot.tasks.phases.joinetcd:_add_learner`` returns once the etcd learner is
added, before ``etcd.yaml`` is written); ``"node"`` is then read from the function's first argument
when it is a phase context.

A phase that shares its function with siblings (``certs/ca`` and ``certs/apiserver`` both call
``run_cert``) is told apart by its arguments, as the phase tree gives them; and a fault acts only inside
its phase's own task (``kubeboot.<workflow>.<path>``), so a join phase that calls an init phase's function
(the same certificate helpers) is not mistaken for that init phase.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubeboot.tasks.errors import PermanentError, TemporaryError
from kubeboot.workflows.phase import PlacedPhase, walk
from kubeboot.workflows.registry import WORKFLOWS

ENV = "KUBEBOOT_TEST_FAULTS"
BARRIER_LIMIT = 90.0  # a barrier nobody releases ends as a failed phase, never as a stuck worker
RETRY_DELAY = 0.2  # injected temporary errors ask for a quick retry


def _count_call(counter: Path) -> int:
    """Increment the number in ``counter`` under an exclusive lock; returns the new count."""
    with open(counter, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.seek(0)
        count = int(fh.read().strip() or "0") + 1
        fh.seek(0)
        fh.truncate()
        fh.write(str(count))
        fh.flush()
        os.fsync(fh.fileno())
    return count


def _wait_for_release(directory: Path, phase: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "reached").write_text(str(os.getpid()))
    deadline = time.monotonic() + BARRIER_LIMIT
    while not (directory / "release").exists():
        if time.monotonic() > deadline:
            raise PermanentError(f"test barrier at {phase} was never released")
        time.sleep(0.05)


def _before(fault: dict[str, Any]) -> None:
    kind, phase = fault["kind"], fault["phase"]
    if kind == "temporary":
        count = _count_call(Path(fault["counter"]))
        if count <= int(fault["times"]):
            raise TemporaryError(f"injected temporary failure {count} of {fault['times']}", delay=RETRY_DELAY)
    elif kind == "permanent":
        if Path(fault["flag"]).exists():
            raise PermanentError(f"injected permanent failure: remove {fault['flag']} to fix it")
    elif kind == "barrier" and fault.get("when", "before") == "before":
        _wait_for_release(Path(fault["dir"]), phase)
    elif kind == "hang":
        while True:
            with contextlib.suppress(BaseException):  # the point: even SoftTimeLimitExceeded is swallowed
                time.sleep(1)


def _after(fault: dict[str, Any]) -> None:
    if fault["kind"] == "barrier" and fault.get("when", "before") == "after":
        _wait_for_release(Path(fault["dir"]), fault["phase"])


def _running_task() -> str | None:
    """The name of the task this process runs now (None outside a task)."""
    from celery import current_task

    return getattr(current_task, "name", None)


def _count_file(fault: dict[str, Any], node: str) -> Path:
    name = fault["phase"].replace("/", "_")
    if fault.get("per_node"):
        name = f"{fault['workflow']}.{node}.{name}"
    return Path(fault["dir"]) / name


def _wrap(fn: Callable[..., None], fault: dict[str, Any], placed: PlacedPhase) -> Callable[..., None]:
    @functools.wraps(fn)
    def faulty(ctx: Any, *call_args: str) -> None:
        node = ctx.cfg.node_name
        if (tuple(call_args) != placed.phase.args or fault.get("node", node) != node
                or _running_task() not in (None, placed.task_name)):
            fn(ctx, *call_args)  # a sibling phase sharing this function, another node's, or another phase's helper
            return
        if fault["kind"] == "count":
            _count_call(_count_file(fault, node))
        _before(fault)
        fn(ctx, *call_args)
        _after(fault)

    return faulty


def _wrap_call(fn: Callable[..., Any], fault: dict[str, Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def faulty(*args: Any, **kwargs: Any) -> Any:
        node = getattr(getattr(args[0] if args else None, "cfg", None), "node_name", None)
        if fault.get("node", node) != node:
            return fn(*args, **kwargs)
        if fault["kind"] == "count":
            _count_call(_count_file(fault, str(node)))
        _before(fault)
        result = fn(*args, **kwargs)
        _after(fault)
        return result

    return faulty


def _duplicate_publishes() -> None:
    """Every message sent twice: the worker's app builds its sender from this method, lazily."""
    from celery.app.amqp import AMQP

    create = AMQP._create_task_sender

    def create_twice(self: Any) -> Callable[..., Any]:
        send = create(self)

        def send_twice(*args: Any, **kwargs: Any) -> Any:
            send(*args, **kwargs)
            return send(*args, **kwargs)

        return send_twice

    AMQP._create_task_sender = create_twice  # type: ignore[method-assign]


def _kill_after_success(fault: dict[str, Any]) -> None:
    from kubeboot.tasks.state.store import RunStore

    complete = RunStore.complete_phase

    def complete_then_die(self: RunStore, run_id: str, node: str, path: str, **kwargs: Any) -> Any:
        verdict = complete(self, run_id, node, path, **kwargs)
        flag = Path(fault["flag"])
        mine = path == fault["phase"] and fault.get("node", node) == node
        if mine and verdict.action == "ok" and not flag.exists():
            flag.write_text(str(os.getpid()))
            os.killpg(os.getpgid(0), signal.SIGKILL) if fault.get("whole") else os.kill(os.getpid(), signal.SIGKILL)
        return verdict

    RunStore.complete_phase = complete_then_die  # type: ignore[method-assign]


def _targets(fault: dict[str, Any]) -> list[PlacedPhase]:
    """The phases a fault names: its path (or every phase with an action, for ``*``) in its workflow(s)."""
    workflow = fault.get("workflow", "init")
    found = []
    for name, roots in WORKFLOWS.items():
        if workflow not in ("*", name):
            continue
        placed = {p.path: p for p in walk(roots, name)}
        if fault["phase"] == "*":
            found += [p for p in placed.values() if p.phase.action]
        elif fault["phase"] in placed:
            found.append(placed[fault["phase"]])
        elif workflow != "*":
            raise ValueError(f"no phase {fault['phase']} in the {name} workflow")
    if not found:
        raise ValueError(f"no phase {fault['phase']} in any workflow")
    return found


def install(faults: list[dict[str, Any]]) -> None:
    for fault in faults:
        if fault["kind"] == "duplicate-publish":
            _duplicate_publishes()
            continue
        if fault["kind"] == "kill-after-success":
            _kill_after_success(fault)
            continue
        if "call" in fault:
            module_name, _, func = fault["call"].partition(":")
            module = importlib.import_module(module_name)
            setattr(module, func, _wrap_call(getattr(module, func), {**fault, "phase": fault["call"],
                                                                      "workflow": "call"}))
            continue
        for placed in _targets(fault):
            if placed.phase.action is None:
                raise ValueError(f"phase {placed.path} has no action to wrap")
            module_name, _, func = placed.phase.action.partition(":")
            module = importlib.import_module(module_name)
            workflow = placed.task_name.split(".")[1]
            setattr(module, func, _wrap(getattr(module, func), {**fault, "phase": placed.path, "workflow": workflow},
                                        placed))


install(json.loads(os.environ.get(ENV) or "[]"))
