"""What the workflow engine adds: one single-node init (ECDSA-P256, so that key generation does not
hide the overhead) run three ways, interleaved in one benchmark run:

  local   the same phases in this process (``kubeboot init phase all``)
  celery  ``submit init`` through real workers (embedded Redis, a node and a control worker)
  bare    a Celery chain of no-op tasks of the same length, on the same queues and workers

    added cost per phase = (celery - local) / hops        bare hop = bare / hops
Target: added cost per phase <= 1.3x a bare hop. Also reports worker memory (RSS and PSS of each worker's
process tree) idle and after ``--runs`` runs.

    python -m bench.orchestration [--rounds 10] [--runs 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.procmem import pss_kib, rss_kib, tree

NODE = "bench-cp"


def _memory_kib(pid: int) -> tuple[int, int]:
    """RSS and PSS of a worker's process tree (main process and pool children; see bench.procmem)."""
    pids = tree(pid)
    return rss_kib(pids), pss_kib(pids)


def _docs(cluster: str) -> list[dict[str, object]]:
    v4 = "kubeadm.k8s.io/v1beta4"
    return [
        {"apiVersion": v4, "kind": "InitConfiguration",
         "nodeRegistration": {"name": NODE, "ignorePreflightErrors": ["all"]},
         "localAPIEndpoint": {"advertiseAddress": "127.0.21.1"}},
        {"apiVersion": v4, "kind": "ClusterConfiguration", "clusterName": cluster, "encryptionAlgorithm": "ECDSA-P256"},
    ]


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        self.env = {**os.environ, "KUBEBOOT_STATE_DIR": str(tmp / "state"), "PYTHONPATH": os.getcwd()}
        self.env.pop("KUBEBOOT_REDIS_URL", None)
        os.environ.update({k: self.env[k] for k in ("KUBEBOOT_STATE_DIR",)})
        os.environ.pop("KUBEBOOT_REDIS_URL", None)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        from kubeboot.workers.services import Services

        self.svc = Services.connect()
        self.app = self.svc.app()
        self.seq = 0

    def start_workers(self) -> None:
        cli = [sys.executable, "-m", "kubeboot.workers.cli", "worker"]
        inc = ["--include", "bench.noop", "--loglevel", "WARNING"]
        log = (self.tmp / "workers.log").open("ab")
        for name, args in {"node": ["node", "--id", NODE, "--root", str(self.root)], "control": ["control"]}.items():
            self.procs[name] = subprocess.Popen([*cli, *args, *inc], env=self.env, stdout=log, stderr=log,
                                                start_new_session=True)
        self.wait_ready()

    def wait_ready(self) -> None:
        from kubeboot.tasks.state.presence import consumer

        # Node workers ignore broadcast commands (no ping): a worker is up once it beats for its queue.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(consumer(self.svc.redis, q) for q in (f"node.{NODE}", "control")):
                return
            time.sleep(0.1)
        raise RuntimeError(f"workers did not start; see {self.tmp / 'workers.log'}")

    def stop(self) -> None:
        from kubeboot.workers.redis_server import EmbeddedRedis

        for proc in self.procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            proc.wait(30)
        EmbeddedRedis(self.svc.settings.state_dir).stop()

    def local(self) -> float:
        from kubeboot.config.loader import build_init_config
        from kubeboot.tasks.fsutil import NodeFS
        from kubeboot.tasks.phases.context import NodeContext
        from kubeboot.workflows.local import plan_init, run_steps

        cfg = build_init_config(_docs("local"))  # type: ignore[arg-type]
        with tempfile.TemporaryDirectory() as d:
            ctx = NodeContext(cfg=cfg, fs=NodeFS(d), out=lambda _: None)
            start = time.perf_counter()
            run_steps(plan_init(cfg, "local"), ctx)
            return time.perf_counter() - start

    def celery(self) -> tuple[float, int]:
        from kubeboot.config.loader import build_init_config
        from kubeboot.workflows.init_tree import AFTER_LOCAL
        from kubeboot.workflows.runs import submit_init

        shutil.rmtree(self.root, ignore_errors=True)
        self.seq += 1
        cfg = build_init_config(_docs(f"bench-{self.seq}"))  # type: ignore[arg-type]
        start = time.perf_counter()
        sub = submit_init(self.app, self.svc.redis, self.svc.store, self.svc.settings, cfg, skip=list(AFTER_LOCAL))
        while (status := self.svc.store.run_status(sub.run.id)) not in ("succeeded", "failed"):
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
        if status != "succeeded":
            raise RuntimeError(f"run {sub.run.id} failed: {self.svc.store.get_run(sub.run.id)}")
        hops = sum(1 for r in self.svc.store.phase_records(sub.run.id) if r.status == "succeeded") + 1
        return elapsed, hops

    def bare(self, hops: int) -> float:
        from celery import chain

        from bench.noop import DONE_KEY

        self.seq += 1
        run_id = f"bare-{self.seq}"
        sigs = [self.app.signature("kubeboot.bench.noop", args=(run_id, NODE), immutable=True, queue=f"node.{NODE}")
                for _ in range(hops - 1)]
        sigs.append(self.app.signature("kubeboot.bench.done", args=(run_id,), immutable=True, queue="control"))
        from kubeboot.workflows.runs import declare

        declare(self.app, [f"node.{NODE}"])
        start = time.perf_counter()
        chain(*sigs).apply_async()
        while not self.svc.redis.exists(DONE_KEY.format(run_id)):
            time.sleep(0.002)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100, help="runs before the second memory reading")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as d:
        bench = Bench(Path(d))
        try:
            bench.start_workers()
            idle = {name: _memory_kib(p.pid) for name, p in bench.procs.items()}
            bench.local()
            bench.celery()  # warm-up: imports in the pool children
            local, celery, bare, hops = [], [], [], 0
            for _ in range(args.rounds):
                local.append(bench.local())
                t, hops = bench.celery()
                celery.append(t)
                bare.append(bench.bare(hops))
            for _ in range(max(0, args.runs - args.rounds - 1)):
                bench.celery()
            after = {name: _memory_kib(p.pid) for name, p in bench.procs.items()}
        finally:
            bench.stop()
    lo, ce, ba = statistics.median(local), statistics.median(celery), statistics.median(bare)
    added, hop = (ce - lo) / hops, ba / hops
    print(f"hops per run (phase tasks + finish): {hops}; medians of {args.rounds} interleaved rounds")
    print(f"  local (in process)      {lo * 1000:8.1f} ms")
    print(f"  celery (submit init)    {ce * 1000:8.1f} ms")
    print(f"  bare chain of no-ops    {ba * 1000:8.1f} ms")
    print(f"  added cost per phase    {added * 1000:8.2f} ms   bare hop {hop * 1000:.2f} ms   "
          f"ratio {added / hop:.2f} (target <= 1.3)")
    for name, (rss, pss) in idle.items():
        print(f"  {name} worker RSS / PSS: idle {rss / 1024:.1f} / {pss / 1024:.1f} MiB, after {args.runs} runs "
              f"{after[name][0] / 1024:.1f} / {after[name][1] / 1024:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
