"""What the workflow engine adds: one single-node init (ECDSA-P256, so that key generation does not
hide the overhead) run three ways, interleaved in one benchmark run:

  local   the same phases in this process (``kubeboot init phase all``)
  celery  ``submit init`` through real workers (embedded Redis, a node and a control worker)
  bare    a Celery chain of no-op tasks of the same length, on the same queues and workers
  busy    the same chain whose tasks burn, each, the CPU time of an average phase of this round's local
          run, beside the same burns in this process: what running a phase's work in a worker costs
          any engine on this host (a worker's process competes for the cores with the broker and the
          worker's own main process, and starts each task with cold caches)

    added cost per phase = (celery - local) / hops        bare hop = bare / hops
    work floor = (busy chain - busy in process) / hops: the added cost per phase of an engine that added
                 nothing to a bare hop; its ratio to the bare hop is the floor of the ratio on this host

Round by round, too (a round's three runs are seconds apart and share the host's load, which on a busy
host moves far more between rounds): the median of (added cost per phase - bare hop), the engine's own
cost per phase, and the median of the rounds' ratios.

A celery or bare run ends when its last task's own write wakes this process (the run record's change,
a keyspace event; the done task's list): no polling, which would keep a process and Redis busy on the
host whose workers are measured.
Target: added cost per phase <= 1.3x a bare hop. Also reports worker memory (RSS and PSS of each worker's
process tree) idle and after ``--runs`` runs.

``--before REF`` compares two engines side by side: the code of commit REF (a ``git worktree`` imported
through a link tree, as ``bench.apiserver`` does, by this benchmark's process and its workers alike) and
this tree's, ``--alternations`` times each, alternating which goes first, ``--rounds`` rounds each time, so
a busy machine slows both alike; the ratio of each from the medians of all its rounds.

    python -m bench.orchestration [--rounds 10] [--runs 100]
    python -m bench.orchestration --before REF [--rounds 10] [--alternations 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TypedDict

from bench.procmem import pss_kib, rss_kib, tree
from bench.workers import Workers

NODE = "bench-cp"
DEADLINE = 120.0  # a bound for one run on a busy host, not a figure


class Measured(TypedDict):
    hops: int
    local: list[float]  # seconds per run, one per round
    celery: list[float]
    bare: list[float]
    floor: list[float]  # work floor per phase, one per round
    idle: dict[str, tuple[int, int]]  # worker -> (RSS, PSS) KiB
    after: dict[str, tuple[int, int]]
    engine: str  # where kubeboot.tasks was imported from


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


class Bench(Workers):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, NODE, "bench.noop")
        self.seq = 0

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
        status = self._ended(sub.run.id)
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
        if not self.svc.redis.blpop([DONE_KEY.format(run_id)], timeout=DEADLINE):
            raise RuntimeError(f"bare chain {run_id} did not end within {DEADLINE:.0f}s")
        return time.perf_counter() - start

    def busy(self, hops: int, seconds: float) -> float:
        """The work floor per phase (module docstring): ``hops - 1`` burns of ``seconds`` each in a chain,
        less the same burns here."""
        from celery import chain

        from bench.noop import DONE_KEY, burn

        self.seq += 1
        run_id = f"busy-{self.seq}"
        sigs = [self.app.signature("kubeboot.bench.busy", args=(run_id, NODE, seconds), immutable=True,
                                   queue=f"node.{NODE}") for _ in range(hops - 1)]
        sigs.append(self.app.signature("kubeboot.bench.done", args=(run_id,), immutable=True, queue="control"))
        start = time.perf_counter()
        chain(*sigs).apply_async()
        if not self.svc.redis.blpop([DONE_KEY.format(run_id)], timeout=DEADLINE):
            raise RuntimeError(f"busy chain {run_id} did not end within {DEADLINE:.0f}s")
        in_chain = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(hops - 1):
            burn(seconds)
        return (in_chain - (time.perf_counter() - start)) / hops

    def _ended(self, run_id: str) -> str:
        """How the run ended, woken by Redis when the run's record changes (keyspace events of hash
        commands, on this benchmark's own Redis): a handful of wake-ups per run. (Polling, or reading the
        run's event stream, wakes this process dozens to hundreds of times per run on the very host
        whose workers are measured: ~15 ms of CPU per run, against ~3 ms for a bare chain.)"""
        from kubeboot.tasks.state.keys import run_key

        self.svc.redis.config_set("notify-keyspace-events", "Kh")
        db = self.svc.redis.connection_pool.connection_kwargs.get("db", 0)
        end = time.monotonic() + DEADLINE
        with self.svc.redis.pubsub(ignore_subscribe_messages=True) as changes:  # type: ignore[no-untyped-call]
            changes.subscribe(f"__keyspace@{db}__:{run_key(run_id)}")
            while time.monotonic() < end:
                status = self.svc.store.run_status(run_id)  # after subscribing: no change is missed
                if status in ("succeeded", "failed"):
                    return status
                changes.get_message(timeout=1.0)
        raise RuntimeError(f"run {run_id} did not end within {DEADLINE:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100, help="runs before the second memory reading")
    parser.add_argument("--before", metavar="REF", help="compare with the engine of commit REF, alternating")
    parser.add_argument("--alternations", type=int, default=4, help="with --before: runs of each side")
    parser.add_argument("--json", action="store_true", help="print the measurements as one JSON object")
    args = parser.parse_args(argv)
    if args.before:
        return compare(args.before, args.rounds, args.alternations)
    measured = measure(args.rounds, args.runs)
    if args.json:
        print(json.dumps(measured))
        return 0
    report(measured, args.runs)
    return 0


def measure(rounds: int, runs: int) -> Measured:
    """Interleaved rounds of local, celery and bare runs; worker memory idle and after ``runs`` runs."""
    import kubeboot.tasks

    with tempfile.TemporaryDirectory(prefix="kb-bench-") as d:
        bench = Bench(Path(d))
        try:
            bench.start()
            idle = {name: _memory_kib(p.pid) for name, p in bench.procs.items()}
            bench.local()
            bench.celery()  # warm-up: imports in the pool children
            local: list[float] = []
            celery: list[float] = []
            bare: list[float] = []
            hops = 0
            floor: list[float] = []
            for _ in range(rounds):
                local.append(bench.local())
                t, hops = bench.celery()
                celery.append(t)
                bare.append(bench.bare(hops))
                floor.append(bench.busy(hops, local[-1] / (hops - 1)))
            for _ in range(max(0, runs - rounds - 1)):
                bench.celery()
            after = {name: _memory_kib(p.pid) for name, p in bench.procs.items()}
        finally:
            bench.stop()
    return {"hops": hops, "local": local, "celery": celery, "bare": bare, "floor": floor, "idle": idle, "after": after,
            "engine": str(Path(kubeboot.tasks.__path__[0]).resolve())}


def ratio(m: Measured) -> tuple[float, float, float]:
    """(added cost per phase, bare hop, their ratio) from the medians of the rounds in ``m``."""
    lo, ce, ba = (statistics.median(m[k]) for k in ("local", "celery", "bare"))
    added, hop = (ce - lo) / m["hops"], ba / m["hops"]
    return added, hop, added / hop


def paired(m: Measured) -> tuple[float, float]:
    """Round by round (the three runs of a round are seconds apart, so they share the host's load):
    the median of (added cost per phase - bare hop), and the median of the rounds' ratios."""
    rounds = list(zip(m["local"], m["celery"], m["bare"], strict=True))
    beyond = statistics.median((ce - lo - ba) / m["hops"] for lo, ce, ba in rounds)
    return beyond, statistics.median((ce - lo) / ba for lo, ce, ba in rounds)


def report(m: Measured, runs: int) -> None:
    added, hop, r = ratio(m)
    beyond, per_round = paired(m)
    print(f"hops per run (phase tasks + finish): {m['hops']}; medians of {len(m['local'])} interleaved rounds")
    for label, times in (("local (in process)", m["local"]), ("celery (submit init)", m["celery"]),
                         ("bare chain of no-ops", m["bare"])):
        print(f"  {label:23s} {statistics.median(times) * 1000:8.1f} ms")
    print(f"  added cost per phase    {added * 1000:8.2f} ms   bare hop {hop * 1000:.2f} ms   "
          f"ratio {r:.2f} (target <= 1.3)")
    print(f"  round by round          {beyond * 1000:8.2f} ms per phase beyond a bare hop, ratio {per_round:.2f}")
    floor = statistics.median(m["floor"])
    print(f"  work floor per phase    {floor * 1000:8.2f} ms   ratio {floor / hop:.2f} (any engine, on this host)")
    for name, (rss, pss) in m["idle"].items():
        after = m["after"][name]
        print(f"  {name} worker RSS / PSS: idle {rss / 1024:.1f} / {pss / 1024:.1f} MiB, after {runs} runs "
              f"{after[0] / 1024:.1f} / {after[1] / 1024:.1f} MiB")


def compare(ref: str, rounds: int, alternations: int) -> int:
    """This tree's engine beside commit ``ref``'s, alternating (module docstring)."""
    from bench.apiserver import worktree

    sides: dict[str, list[Measured]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="kb-bench-before-") as d, worktree(ref, Path(d)) as before_src:
        paths = {"before": os.pathsep.join(filter(None, [str(before_src), os.environ.get("PYTHONPATH", "")])),
                 "after": os.environ.get("PYTHONPATH", "")}
        for i in range(alternations):
            for side in ("before", "after") if i % 2 == 0 else ("after", "before"):
                env = {**os.environ, "PYTHONPATH": paths[side]}
                done = subprocess.run([sys.executable, "-m", "bench.orchestration", "--rounds", str(rounds),
                                       "--runs", "0", "--json"], env=env, capture_output=True, text=True,
                                      check=False)
                if done.returncode != 0:
                    raise SystemExit(f"bench.orchestration: the {side} side failed:\n{done.stderr[-3000:]}")
                m: Measured = json.loads(done.stdout.strip().splitlines()[-1])
                inside = str(m["engine"]).startswith(str(Path(d).resolve()))
                if inside != (side == "before"):  # the link tree must have been imported, and only there
                    raise SystemExit(f"bench.orchestration: the {side} side imported {m['engine']}")
                sides[side].append(m)
                print(f"  {side:6s} #{i + 1}: ratio {ratio(m)[2]:.2f}", flush=True)
    print(f"{ref} (before) beside this tree (after): {alternations} alternations of {rounds} rounds each")
    for side, ms in sides.items():
        merged: Measured = {**ms[0], **{k: [t for m in ms for t in m[k]]  # type: ignore[typeddict-item]
                                        for k in ("local", "celery", "bare", "floor")}}
        added, hop, r = ratio(merged)
        beyond, per_round = paired(merged)
        print(f"  {side:6s} added cost per phase {added * 1000:6.2f} ms   bare hop {hop * 1000:5.2f} ms   "
              f"ratio {r:.2f}   (per alternation: {', '.join(f'{ratio(m)[2]:.2f}' for m in ms)})")
        floor = statistics.median(merged["floor"])
        print(f"         round by round: {beyond * 1000:5.2f} ms per phase beyond a bare hop, ratio {per_round:.2f}; "
              f"work floor {floor * 1000:.2f} ms, ratio {floor / hop:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
