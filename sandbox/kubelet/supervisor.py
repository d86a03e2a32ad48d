"""Keeps a node's static Pods running as local processes, as the kubelet keeps their containers running.

Reads: the static Pods it is given (``staticpods``), ``pods/<pod>/state.json`` of an earlier daemon.
Writes: ``pods/<pod>/{pid,state.json}``, the container logs, ``pods.json`` (see ``layout``).

``sync`` is called every half second with the Pods found in the manifest directory:
- a new Pod is started; a Pod whose UID changed (its manifest changed) is stopped and started anew
  with a restart count of 0 (a new UID is a new Pod to the kubelet);
- a Pod whose process died, or whose startup/liveness probe failed failureThreshold times, is started
  again after a back-off like the kubelet's CrashLoopBackOff but short: 0.5 s doubling to 10 s, back
  to 0.5 s once a run lasted 20 s; its restart count goes up by one;
- a Pod whose manifest is gone is stopped (SIGTERM to its process group, SIGKILL after 5 s).
``adopt`` takes over the processes an earlier daemon started (their state files): a kubelet restart
leaves containers running, and the new kubelet must not start duplicates.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubeboot.sandbox.kubelet import launch as launch_mod
from kubeboot.sandbox.kubelet import process
from kubeboot.sandbox.kubelet.layout import ENV_SANDBOX_DIR, ENV_SANDBOX_HOSTNAME, ENV_SANDBOX_VERSION, Layout
from kubeboot.sandbox.kubelet.probes import Prober, ProbeState
from kubeboot.sandbox.kubelet.staticpods import StaticPod

log = logging.getLogger("kubeboot.sandbox.kubelet")

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 10.0
BACKOFF_RESET_AFTER = 2 * BACKOFF_MAX  # the kubelet forgets the back-off after 2x its maximum


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Container:
    """One running process of a Pod."""

    pid: int
    start_ticks: int | None
    started_at: float  # time.monotonic()
    started_wall: str
    argv: list[str]
    log_path: Path
    launch: launch_mod.Launch
    popen: subprocess.Popen[bytes] | None = None  # None for an adopted process (not our child)
    probes: ProbeState = field(default_factory=ProbeState)
    prober: Prober | None = None

    def exited(self) -> int | None:
        """The exit code once the process is gone (-1 when not ours to know); None while it runs."""
        if self.popen is not None:
            return self.popen.poll()
        return None if process.alive(self.pid, self.start_ticks) else -1


@dataclass
class Slot:
    """A Pod the kubelet keeps running, across restarts of its process."""

    pod: StaticPod
    restarts: int = 0
    container: Container | None = None
    backoff: float = BACKOFF_INITIAL
    next_start: float = 0.0
    last_exit: dict[str, Any] | None = None
    error: str = ""


class Supervisor:
    def __init__(self, root: Path, node_name: str, address: str) -> None:
        self.root = root
        self.node_name = node_name
        self.address = address
        self.layout = Layout(root)
        self.slots: dict[str, Slot] = {}
        self._status_written: dict[str, Any] | None = None
        self._noted: set[str] = set()

    # --- adopting what an earlier daemon left running --------------------------------------------

    def adopt(self) -> None:
        if not self.layout.pods_dir.is_dir():
            return
        for state_file in sorted(self.layout.pods_dir.glob("*/state.json")):
            state = process.read_json(state_file)
            if not state:
                continue
            pod = StaticPod(name=state["name"], namespace=state["namespace"], uid=state["uid"],
                            file=Path(state["file"]), pod=state["pod"])
            slot = Slot(pod, restarts=int(state.get("restarts", 0)))
            pid, ticks = int(state["pid"]), state.get("start_ticks")
            if process.alive(pid, ticks):
                launch = launch_mod.Launch(**state["launch"])
                age = max(0.0, time.time() - float(state.get("started_epoch", time.time())))
                slot.container = Container(pid, ticks, time.monotonic() - age, state["started"], state["argv"],
                                           Path(state["log"]), launch)
                self._start_prober(slot.container, pod)
                log.info("adopted running pod %s (pid %d)", pod.name, pid)
            else:
                slot.restarts += 1  # it died while no kubelet watched it
                slot.last_exit = {"reason": "exited while the kubelet was down", "finishedAt": _now_iso()}
            self.slots[pod.name] = slot

    # --- the reconcile loop -----------------------------------------------------------------------

    def sync(self, pods: dict[str, StaticPod]) -> None:
        for name in [n for n in self.slots if n not in pods]:
            log.info("static pod %s removed: stopping it", name)
            self._stop(self.slots.pop(name))
            shutil.rmtree(self.layout.pod_dir(name), ignore_errors=True)
        for name, pod in pods.items():
            slot = self.slots.get(name)
            if slot is not None and slot.pod.uid != pod.uid:
                log.info("static pod %s changed (uid %s -> %s): replacing it", name, slot.pod.uid, pod.uid)
                self._stop(slot)
                slot = None
            if slot is None:
                slot = self.slots[name] = Slot(pod)
            self._keep_running(slot)
        self.write_status()

    def _keep_running(self, slot: Slot) -> None:
        c = slot.container
        if c is not None:
            code = c.exited()
            if code is None and not c.probes.kill_reason:
                return
            if code is None:
                log.warning("pod %s: %s; restarting the container", slot.pod.name, c.probes.kill_reason)
                self._stop(slot)
                reason = c.probes.kill_reason
            else:
                self._stop(slot)  # the group may hold children of the dead process
                if code < -1:  # killed by a signal: a runtime reports 128 + the signal number
                    code = 128 - code
                reason = "exited" if code == -1 else f"exited with code {code}"
                log.warning("pod %s: container %s (pid %d) %s", slot.pod.name, slot.pod.container_name, c.pid, reason)
            slot.last_exit = {"reason": reason, "exitCode": code, "startedAt": c.started_wall,
                              "finishedAt": _now_iso()}
            if time.monotonic() - c.started_at >= BACKOFF_RESET_AFTER:
                slot.backoff = BACKOFF_INITIAL
            slot.restarts += 1
            slot.next_start = time.monotonic() + slot.backoff
            slot.backoff = min(slot.backoff * 2, BACKOFF_MAX)
        if time.monotonic() >= slot.next_start:
            self._start(slot)

    # --- starting and stopping one container -----------------------------------------------------

    def _note_once(self, text: str) -> None:
        if text not in self._noted:
            self._noted.add(text)
            log.info("%s", text)

    def _start(self, slot: Slot) -> None:
        pod = slot.pod
        try:
            plan = launch_mod.plan(pod.pod, self.root, self.address)
        except (ValueError, KeyError, OSError) as e:
            if slot.error != str(e):
                log.error("pod %s cannot start: %s", pod.name, e)
            slot.error = str(e)
            slot.next_start = time.monotonic() + slot.backoff
            slot.backoff = min(slot.backoff * 2, BACKOFF_MAX)
            return
        slot.error = ""
        for note in plan.notes:
            self._note_once(note)
        log_path = pod.log_dir(self.root) / pod.container_name / f"{slot.restarts}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._make_host_paths(pod)
        env = self._env(pod, plan)
        with log_path.open("ab") as out:
            try:
                popen = subprocess.Popen(plan.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, cwd=self.root, start_new_session=True)
            except OSError as e:
                log.error("pod %s cannot start %s: %s", pod.name, plan.argv[0], e)
                slot.error = str(e)
                slot.next_start = time.monotonic() + slot.backoff
                slot.backoff = min(slot.backoff * 2, BACKOFF_MAX)
                return
        c = Container(popen.pid, process.start_time(popen.pid), time.monotonic(), _now_iso(), plan.argv, log_path,
                      plan, popen)
        slot.container = c
        self._save(slot)
        self._start_prober(c, pod)
        log.info("started pod %s: %s (pid %d, restarts %d)", pod.name, " ".join(plan.argv), c.pid, slot.restarts)

    def _start_prober(self, c: Container, pod: StaticPod) -> None:
        c.prober = Prober(pod.container, self.address, c.started_at, c.probes,
                          map_path=lambda p: launch_mod.probe_path(c.launch, p), name=f"probe-{pod.name}")
        c.prober.start()

    def _make_host_paths(self, pod: StaticPod) -> None:
        """hostPath volumes of type DirectoryOrCreate are created (0755) as the kubelet does."""
        for v in pod.pod["spec"].get("volumes") or []:
            hp = v.get("hostPath") or {}
            if hp.get("type") == "DirectoryOrCreate" and hp.get("path"):
                (self.root / str(hp["path"]).lstrip("/")).mkdir(mode=0o755, parents=True, exist_ok=True)

    def _env(self, pod: StaticPod, plan: launch_mod.Launch) -> dict[str, str]:
        # The host's environment underneath (PATH, the Python environment): a process is not a container.
        env = dict(os.environ)
        for item in pod.container.get("env") or []:
            if "value" in item:
                env[str(item["name"])] = str(item["value"])
        env[ENV_SANDBOX_DIR] = str(self.layout.sandbox_dir)
        env[ENV_SANDBOX_VERSION] = plan.version
        # The hostname a hostNetwork container sees is its node's: the emulated components put it in
        # their leader-election identity, so a Lease names the node whose component holds it.
        env[ENV_SANDBOX_HOSTNAME] = self.node_name
        return env

    def _stop(self, slot: Slot) -> None:
        c = slot.container
        if c is None:
            return
        if c.prober is not None:
            c.prober.stop()
        process.stop_group(c.pid, c.start_ticks, popen=c.popen)
        slot.container = None
        for name in ("pid", "state.json"):
            (self.layout.pod_dir(slot.pod.name) / name).unlink(missing_ok=True)

    def stop_all(self) -> None:
        for slot in self.slots.values():
            self._stop(slot)

    def _save(self, slot: Slot) -> None:
        c = slot.container
        assert c is not None
        pod = slot.pod
        directory = self.layout.pod_dir(pod.name)
        process.write_json(directory / "state.json", {
            "name": pod.name, "namespace": pod.namespace, "uid": pod.uid, "file": str(pod.file), "pod": pod.pod,
            "pid": c.pid, "start_ticks": c.start_ticks, "started": c.started_wall, "started_epoch": time.time(),
            "argv": c.argv, "log": str(c.log_path), "restarts": slot.restarts,
            "launch": {"argv": c.launch.argv, "component": c.launch.component, "kind": c.launch.kind,
                       "version": c.launch.version, "notes": c.launch.notes, "etcd_legacy": c.launch.etcd_legacy},
        })
        process.write_pid(directory / "pid", c.pid)

    # --- status -----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        pods = []
        for name, slot in sorted(self.slots.items()):
            c = slot.container
            pods.append({
                "name": name, "namespace": slot.pod.namespace, "uid": slot.pod.uid,
                "container": slot.pod.container_name, "image": slot.pod.container.get("image", ""),
                "state": "running" if c else "waiting",
                "started": bool(c and c.probes.started), "ready": bool(c and c.probes.ready and c.probes.started),
                "restarts": slot.restarts, "pid": c.pid if c else None, "argv": c.argv if c else None,
                "kind": c.launch.kind if c else None, "log": str(c.log_path) if c else None,
                "startedAt": c.started_wall if c else None, "lastState": slot.last_exit, "error": slot.error,
            })
        return {"node": self.node_name, "address": self.address, "pods": pods}

    def mirror_sources(self) -> list[tuple[StaticPod, dict[str, Any]]]:
        """Each static Pod with its status entry (read by the node agent's thread: works on a copy)."""
        slots = dict(self.slots)
        return [(slots[entry["name"]].pod, entry) for entry in self.status()["pods"] if entry["name"] in slots]

    def write_status(self) -> None:
        status = self.status()
        if status != self._status_written:
            process.write_json(self.layout.status_file, {**status, "updated": _now_iso()})
            self._status_written = status
