"""What one sandbox control-plane node costs, and how many of them fit on this machine.

For clusters = 1, 2 and 4 (one control-plane node each), in one benchmark run: ``sandbox up`` (and
every worker answering a ping), every cluster's ``submit init`` sent at once (in process, through the
sandbox's real workers), then

  start-up   from ``submit init`` (run created) to a healthy control plane (wait-control-plane
             finished), and to the end of the whole init; median and slowest over the clusters
  memory     RSS (/proc/<pid>/status VmRSS) of each process of a node: the node worker (main process
             and its pool children), the sandbox kubelet daemon, and the static pods it runs (etcd,
             kube-apiserver, kube-controller-manager, kube-scheduler; found by the pid files the
             sandbox kubelet keeps); mean per node, and the node's PSS (/proc/<pid>/smaps_rollup:
             pages its forked processes share counted once). The control worker, the embedded
             Redis and the sandbox's supervisor serve every node: reported apart, as shared
  idle CPU   utime + stime (/proc/<pid>/stat) of the same processes over ``--idle-seconds`` once every
             init has ended, in cores per node

then ``sandbox down``. From the figures of the largest sandbox the fit is estimated two ways:

  memory bound = (MemAvailable before the first sandbox − shared RSS) / RSS per node (RSS, not PSS:
                 the safe side)
  CPU bound    = (CPU budget − shared idle cores) / idle cores per node; budget = 0.75 of the cores
               (1.5 of 2): the idle load at which a node's own work (an init, a restart) still runs
  estimate     = the smaller of the two

    python -m bench.sandbox_node [--clusters 1,2,4] [--idle-seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.procmem import children, pss_kib, rss_kib

WORKER_DEADLINE = 60.0
RUN_DEADLINE = 300.0  # bound of one init on a busy host (an init alone is ~10 s)
SETTLE_SECONDS = 3.0  # after the inits: controllers' first sync passes, before the idle sample
CPU_BUDGET_SHARE = 0.75
PODS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
ROWS = ("node worker", "sandbox kubelet", *PODS)


# --- /proc ------------------------------------------------------------------------------------------


def cpu_ticks(pids: Sequence[int]) -> int:
    """utime + stime of ``pids`` (every thread of each), in clock ticks."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total


def meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


def seconds(a: str, b: str) -> float:
    """``b - a`` of two store timestamps (ISO 8601, ``Z``)."""
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


# --- a sandbox, driven in process -------------------------------------------------------------------


def connect(state: Path) -> Any:
    """Services of a private state dir (its own embedded Redis); the sandbox's workers inherit it."""
    os.environ["KUBEBOOT_STATE_DIR"] = str(state)
    os.environ.pop("KUBEBOOT_REDIS_URL", None)
    from kubeboot.workers.services import Services

    return Services.connect()


def stop_redis(state: Path) -> None:
    from kubeboot.workers.redis_server import EmbeddedRedis

    EmbeddedRedis(state).stop()


@dataclass
class Ended:
    """One ended run: its record and phase records, and the events (for retry gaps)."""

    run: Any  # RunRecord
    phases: list[Any]  # PhaseRecord
    events: list[Any]  # Event

    def phase(self, path: str) -> Any:
        return next(p for p in self.phases if p.path == path)

    @property
    def wall(self) -> float:
        return seconds(self.run.created, self.run.finished)


class Sandbox:
    """``kubeboot sandbox up`` of ``clusters`` one-node clusters in ``directory``; ``down`` on exit."""

    def __init__(self, svc: Any, directory: Path, clusters: int) -> None:
        from kubeboot.workers.sandbox_env import SandboxEnv

        self.svc = svc
        self.app = svc.app()
        self.env = SandboxEnv(directory, lambda _line: None)
        self.clusters = clusters
        self.box: Any = None

    def __enter__(self) -> Sandbox:
        try:
            self.box = self.env.up(self.clusters, 1, 0, None)
            self._wait_workers(1 + len(self.box.nodes))
        except BaseException:
            self.env.down()
            raise
        return self

    def _wait_workers(self, count: int) -> None:
        """``sandbox up`` returns once the kubelets answer; the workers may still be importing. Timing
        starts when every worker beats for its queue (node workers answer no broadcast ping), so a start-up
        figure is the init's, not the worker's."""
        from kubeboot.tasks.state.presence import consumer

        deadline = time.monotonic() + WORKER_DEADLINE
        queues = ["control", *(n.queue for n in self.box.nodes)]
        while sum(1 for q in queues if consumer(self.svc.redis, q)) < count:
            time.sleep(0.1)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} workers did not answer in {WORKER_DEADLINE:.0f}s; see {self.env.logs}")

    def __exit__(self, *_exc: object) -> None:
        left = self.env.down()
        if left:
            print(f"WARNING: sandbox down left processes alive: {left}")

    def submit(self, cluster: str, skip: Sequence[str] = ()) -> str:
        from kubeboot.config.loader import load_init_config
        from kubeboot.workflows.runs import submit_init

        cfg = load_init_config(self.box.clusters[cluster])
        sub = submit_init(self.app, self.svc.redis, self.svc.store, self.svc.settings, cfg, skip=list(skip))
        return str(sub.run.id)

    def wait(self, run_ids: Sequence[str]) -> dict[str, Ended]:
        store = self.svc.store
        deadline = time.monotonic() + RUN_DEADLINE
        pending = set(run_ids)
        while pending:
            pending = {r for r in pending if store.run_status(r) not in ("succeeded", "failed")}
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"runs {sorted(pending)} did not end in {RUN_DEADLINE:.0f}s")
            time.sleep(0.05)
        ended = {r: Ended(store.get_run(r), store.phase_records(r), store.events(r)) for r in run_ids}
        for r, e in ended.items():
            if e.run.status != "succeeded":
                raise RuntimeError(f"run {r} failed: {e.run.error}; logs in {self.env.logs}")
        return ended

    def init(self, cluster: str, skip: Sequence[str] = ()) -> Ended:
        run_id = self.submit(cluster, skip)
        return self.wait([run_id])[run_id]

    def kubelet(self, node: Any) -> Any:
        from kubeboot.sandbox.kubelet.driver import SandboxKubelet

        return SandboxKubelet(node.root, node.name, node.address)

    def node_processes(self, node: Any) -> dict[str, list[int]]:
        """Row name -> pids of one node's processes (pods apart from the kubelet daemon that runs them)."""
        kubelet = self.kubelet(node)
        procs = {"node worker": [node.worker_pid, *children(node.worker_pid)],
                 "sandbox kubelet": [p for p in [kubelet.daemon_pid()] if p]}
        for pod, pid in kubelet.pod_pids().items():
            row = next(name for name in PODS if pod.startswith(f"{name}-"))
            procs[row] = [pid, *children(pid)]
        return procs

    def shared_processes(self) -> dict[str, list[int]]:
        from kubeboot.workers.redis_server import EmbeddedRedis

        redis_pid = EmbeddedRedis(self.svc.settings.state_dir).pid()
        return {"control worker": [self.box.control_pid, *children(self.box.control_pid)],
                "embedded redis": [redis_pid] if redis_pid else [],
                "sandbox supervisor": [self.box.supervisor_pid]}


# --- the benchmark ----------------------------------------------------------------------------------


@dataclass
class Measured:
    clusters: int
    healthy: list[float]  # created -> wait-control-plane finished, per cluster
    whole: list[float]  # created -> run finished, per cluster
    rss: dict[str, float]  # row -> mean KiB per node
    pss: float  # mean KiB per node, every process
    shared_rss: float  # KiB
    idle: dict[str, float]  # row -> idle cores per node
    idle_cores: float  # per node, every process
    shared_idle_cores: float


def measure(svc: Any, state: Path, clusters: int, idle_seconds: float) -> Measured:
    with Sandbox(svc, state / f"sandbox-{clusters}", clusters) as sb:
        run_ids = [sb.submit(cluster) for cluster in sb.box.clusters]
        ended = sb.wait(run_ids).values()
        healthy = [seconds(e.run.created, e.phase("wait-control-plane").finished) for e in ended]
        whole = [e.wall for e in ended]
        time.sleep(SETTLE_SECONDS)
        nodes = [sb.node_processes(n) for n in sb.box.nodes]
        shared = sb.shared_processes()
        by_row = {row: [p for procs in nodes for p in procs.get(row, [])] for row in ROWS}
        shared_pids = [p for pids in shared.values() for p in pids]
        t0, n0, s0 = time.monotonic(), {r: cpu_ticks(p) for r, p in by_row.items()}, cpu_ticks(shared_pids)
        time.sleep(idle_seconds)
        t1, n1, s1 = time.monotonic(), {r: cpu_ticks(p) for r, p in by_row.items()}, cpu_ticks(shared_pids)
        tick = os.sysconf("SC_CLK_TCK")

        def cores(a: int, b: int) -> float:
            return (b - a) / tick / (t1 - t0)

        rss = {row: statistics.mean(rss_kib(procs.get(row, [])) for procs in nodes) for row in ROWS}
        pss = statistics.mean(pss_kib([p for pids in procs.values() for p in pids]) for procs in nodes)
        idle = {row: cores(n0[row], n1[row]) / len(nodes) for row in ROWS}
        return Measured(clusters, healthy, whole, rss, pss, rss_kib(shared_pids), idle, sum(idle.values()),
                        cores(s0, s1))


def report(results: list[Measured], available_kib: int) -> None:
    mib = 1024.0
    cols = "".join(f"{f'clusters={m.clusters}':>13}" for m in results)
    print(f"sandbox control-plane node: start-up from `submit init` (s), median / slowest of the clusters\n"
          f"{'':<34}{cols}")
    for label, attr in (("to a healthy control plane", "healthy"), ("whole init", "whole")):
        cells = "".join(f"{statistics.median(getattr(m, attr)):>6.1f} /{max(getattr(m, attr)):>5.1f}" for m in results)
        print(f"  {label:<32}{cells}")
    print(f"\nRSS per node (MiB, mean over the nodes)\n{'':<34}{cols}")
    for row in ROWS:
        print(f"  {row:<32}" + "".join(f"{m.rss[row] / mib:>13.1f}" for m in results))
    print(f"  {'sum per node':<32}" + "".join(f"{sum(m.rss.values()) / mib:>13.1f}" for m in results))
    print(f"  {'sum per node, PSS':<32}" + "".join(f"{m.pss / mib:>13.1f}" for m in results))
    print(f"  {'shared (ctl, redis, supervisor)':<32}" + "".join(f"{m.shared_rss / mib:>13.1f}" for m in results))
    print(f"\nidle CPU (cores per node)\n{'':<34}{cols}")
    for row in ROWS:
        print(f"  {row:<32}" + "".join(f"{m.idle[row]:>13.3f}" for m in results))
    print(f"  {'sum per node':<32}" + "".join(f"{m.idle_cores:>13.3f}" for m in results))
    print(f"  {'shared (ctl, redis, supervisor)':<32}" + "".join(f"{m.shared_idle_cores:>13.3f}" for m in results))

    last = results[-1]
    cpus = os.cpu_count() or 1
    budget = CPU_BUDGET_SHARE * cpus
    per_node_kib = sum(last.rss.values())
    memory_bound = int((available_kib - last.shared_rss) // per_node_kib)
    cpu_bound = int((budget - last.shared_idle_cores) // last.idle_cores) if last.idle_cores > 0 else 10**6
    print(f"\nfit on this machine ({meminfo_kib('MemTotal') / mib ** 2:.1f} GiB, {cpus} cores; "
          f"figures of clusters={last.clusters})")
    print(f"  memory bound  {memory_bound:>5} nodes   ({available_kib / mib ** 2:.1f} GiB available "
          f"- {last.shared_rss / mib:.0f} MiB shared) / {per_node_kib / mib:.0f} MiB per node")
    print(f"  CPU bound     {cpu_bound:>5} nodes   ({budget:.2f} cores - {last.shared_idle_cores:.3f} shared) "
          f"/ {last.idle_cores:.3f} idle cores per node")
    print(f"  estimate      {min(memory_bound, cpu_bound):>5} sandbox control-plane nodes "
          f"({'CPU' if cpu_bound < memory_bound else 'memory'} bound)")


@contextlib.contextmanager
def private_state() -> Iterator[tuple[Path, Any]]:
    """A temp state dir with its embedded Redis, stopped and removed on exit."""
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as d:
        state = Path(d) / "state"
        try:
            yield state, connect(state)
        finally:
            stop_redis(state)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", default="1,2,4")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    available = meminfo_kib("MemAvailable")
    with private_state() as (state, svc):
        results = [measure(svc, state, int(n), args.idle_seconds) for n in args.clusters.split(",")]
    report(results, available)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
