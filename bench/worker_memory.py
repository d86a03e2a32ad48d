"""What an idle worker costs in memory: a node worker and a control worker, started as ``kubeboot worker
node|control`` starts them (embedded Redis, default concurrency: 1 node child, 2 control children),

  idle        once both are up (beating for their queues) and ``--settle`` seconds passed
  after runs  after ``--runs`` node-local inits (``submit init`` up to kubelet-start, the engine's own
              finish task on the control queue): what the pool children grew to by doing the work

each as RSS and PSS summed over the worker's process tree (main process + pool children; see
bench.procmem), with every process listed. Targets (issue 8): node worker <= 150 MiB PSS,
control worker <= 250 MiB PSS, idle. Also says whether the ``kubernetes`` client is imported in each
process (read from the process itself: ``--include bench.modules`` answers over a pipe file).

    python -m bench.worker_memory [--settle 3] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procmem import pss_kib, rss_kib, tree
from bench.workers import Workers

NODE = "bench-mem"
TARGETS_MIB = {"node": 150, "control": 250}
DEADLINE = 120.0  # a bound on a busy host, not a figure
MIB = 1024


def _docs(cluster: str) -> list[dict[str, object]]:
    v4 = "kubeadm.k8s.io/v1beta4"
    return [
        {"apiVersion": v4, "kind": "InitConfiguration",
         "nodeRegistration": {"name": NODE, "ignorePreflightErrors": ["all"]},
         "localAPIEndpoint": {"advertiseAddress": "127.0.22.1"}},
        {"apiVersion": v4, "kind": "ClusterConfiguration", "clusterName": cluster,
         "encryptionAlgorithm": "ECDSA-P256"},
    ]


class MemoryWorkers(Workers):
    """The two workers, each able to say which modules it imported (``--include bench.modules``)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, NODE, "bench.modules", {"KUBEBOOT_BENCH_MODULES_DIR": str(tmp / "modules")})

    def run_init(self, seq: int) -> None:
        from kubeboot.config.loader import build_init_config
        from kubeboot.workflows.init_tree import AFTER_LOCAL
        from kubeboot.workflows.runs import submit_init

        cfg = build_init_config(_docs(f"mem-{seq}"))
        sub = submit_init(self.app, self.svc.redis, self.svc.store, self.svc.settings, cfg, skip=list(AFTER_LOCAL))
        end = time.monotonic() + DEADLINE * 2
        while (status := self.svc.store.run_status(sub.run.id)) not in ("succeeded", "failed"):
            if time.monotonic() > end:
                raise RuntimeError(f"run {sub.run.id} still {status}; see {self.log}")
            time.sleep(0.05)
        if status != "succeeded":
            raise RuntimeError(f"run {sub.run.id} failed: {self.svc.store.get_run(sub.run.id)}")

    def measure(self) -> dict[str, dict[str, Any]]:
        from bench.modules import ask

        out: dict[str, dict[str, Any]] = {}
        for name, proc in self.procs.items():
            pids = tree(proc.pid)
            out[name] = {"pids": pids, "rss": rss_kib(pids), "pss": pss_kib(pids),
                         "per_process": [(p, rss_kib([p]), pss_kib([p])) for p in pids],
                         "kubernetes": {p: ask(Path(self.env["KUBEBOOT_BENCH_MODULES_DIR"]), p) for p in pids}}
        return out


def report(title: str, figures: dict[str, dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"  {'worker':<10}{'processes':>10}{'RSS MiB':>10}{'PSS MiB':>10}{'target PSS':>12}  kubernetes imported")
    for name, f in figures.items():
        imported = ", ".join(f"{pid}:{'yes' if v else 'no' if v is False else '?'}"
                             for pid, v in f["kubernetes"].items())
        print(f"  {name:<10}{len(f['pids']):>10}{f['rss'] / MIB:>10.1f}{f['pss'] / MIB:>10.1f}"
              f"{'<= ' + str(TARGETS_MIB[name]):>12}  {imported}")
        for pid, rss, pss in f["per_process"]:
            role = "main" if pid == f["pids"][0] else "child"
            print(f"  {'':<10}{role + ' ' + str(pid):>10}{rss / MIB:>10.1f}{pss / MIB:>10.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds idle before the first reading")
    parser.add_argument("--runs", type=int, default=3, help="node-local inits before the second reading")
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kb-mem-") as d:
        workers = MemoryWorkers(Path(d))
        try:
            workers.start()
            time.sleep(args.settle)
            idle = workers.measure()
            for seq in range(args.runs):
                workers.run_init(seq)
            time.sleep(args.settle)
            after = workers.measure()
        except Exception:
            print((Path(d) / "workers.log").read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            workers.stop()
    if args.output == "json":
        def slim(f: dict[str, dict[str, Any]]) -> dict[str, Any]:
            return {n: {"processes": len(v["pids"]), "rss_kib": v["rss"], "pss_kib": v["pss"],
                        "kubernetes_imported": any(v["kubernetes"].values())} for n, v in f.items()}
        print(json.dumps({"idle": slim(idle), f"after_{args.runs}_runs": slim(after)}, indent=2))
        return 0
    report(f"idle, {args.settle:.0f} s after both workers were up", idle)
    report(f"idle after {args.runs} node-local inits", after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
