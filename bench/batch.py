"""Batches of clusters, measured side by side in one benchmark run (each part in its own temporary state
dir, always torn down).

(a) ``dry``: a dry-run batch of N clusters (1 control plane + 1 worker each, kubeadm's default RSA-2048;
    ``--algorithm ECDSA-P256`` makes key generation cheap, to show the orchestration alone) on ONE control
    worker, against the same phases called in this process (``init`` then ``join``, the same dry-run
    client), cluster after cluster:
      clusters per minute, Redis memory per finished cluster (``used_memory`` delta / N, and MEMORY USAGE
      of one cluster's runs), ``status BATCH`` latency (in process and the whole CLI), and
      ratio = CPU seconds per cluster of the batch (worker and Redis) / CPU seconds per cluster in process
      (target <= 1.2; CPU rather than wall time: the machine is shared), with the worker's pool at one child
      (this process's parallelism) and at two; and beside it Celery alone: chains of as many no-op tasks
      as a cluster sends messages, on the same worker and queue, whose CPU is the floor of that ratio for
      any engine built on Celery (``bench.noop``).
(b) ``sandbox``: a sandbox batch of K clusters (1+1) at concurrency C, against one cluster alone:
      clusters per minute, CPU seconds per cluster (every sandbox process, Redis and the CLI), and
      batch time / (one cluster alone x K / C).

    python -m bench.batch dry [--clusters 1000] [--pool 1,2] [--sample 100] [--algorithm RSA-2048]
    python -m bench.batch sandbox [--clusters 12] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.procmem import tree

API = "kubeboot.dev/v1alpha1"
TOKEN, KEY = "abcdef.0123456789abcdef", "ab" * 32


ALGORITHM = {"value": "RSA-2048"}  # kubeadm's default; --algorithm ECDSA-P256 shows the orchestration alone
BATCH_CONCURRENCY = {"value": 16}  # clusters in flight at once in the dry-run batch
BARE_HOPS = 45  # task messages of one 1+1 cluster's dry run (init, join, the cluster's own tasks): LPUSHes counted


def cluster_doc(name: str) -> dict[str, Any]:
    nodes = [{"name": f"{name}-cp1", "address": "10.2.0.1", "role": "control-plane", "ignorePreflightErrors": ["all"]},
             {"name": f"{name}-w1", "address": "10.2.0.2", "role": "worker", "ignorePreflightErrors": ["all"]}]
    return {"apiVersion": API, "kind": "Cluster", "metadata": {"name": name},
            "spec": {"clusterConfiguration": {"encryptionAlgorithm": ALGORITHM["value"]}, "nodes": nodes}}


def batch_doc(count: int) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Batch", "metadata": {"name": "bench"},
            "spec": {"template": cluster_doc("b${index}"), "count": count}}


@contextmanager
def state_dir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        old = {k: os.environ.get(k) for k in ("KUBEBOOT_STATE_DIR", "KUBEBOOT_REDIS_URL")}
        os.environ["KUBEBOOT_STATE_DIR"] = d
        os.environ.pop("KUBEBOOT_REDIS_URL", None)
        try:
            yield Path(d)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "kubeboot.workers.cli", *args], capture_output=True, text=True,
                            check=False, timeout=7200)
    if check and result.returncode:
        raise RuntimeError(f"kubeboot {' '.join(args)}: exit {result.returncode}\n{result.stdout[-2000:]}\n"
                           f"{result.stderr[-2000:]}")
    return result


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime (and their waited-for children's) of the processes, from /proc/<pid>/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])
    return total / tick


# --- (a) a dry-run batch against the same phases in this process ---------------------------------------------

def in_process(count: int, base: Path) -> tuple[float, float]:
    """(seconds, CPU seconds) per cluster of init + join called here: dry run, the same documents, the
    same fake API, the same log lines written to a file."""
    from kubeboot.config.cluster import build_cluster
    from kubeboot.config.join import build_join_config
    from kubeboot.config.loader import build_init_config
    from kubeboot.tasks import dryrun, pki
    from kubeboot.tasks.fsutil import NodeFS
    from kubeboot.tasks.phases.bootstraptoken import admin_ca_pem
    from kubeboot.tasks.phases.context import NodeContext
    from kubeboot.tasks.phases.joincontext import JoinNodeContext
    from kubeboot.workflows.join_runs import plan_join
    from kubeboot.workflows.local import plan_init, run_steps

    with (base / "in-process.log").open("a") as log:
        def out(line: str) -> None:
            log.write(line + "\n")

        start, cpu = time.perf_counter(), time.process_time()
        for i in range(count):
            cluster = build_cluster(cluster_doc(f"p{i}"), "bench")
            scope = base / f"p{i}"
            with dryrun.session(scope / "api", out, workflow="init", show_secrets=False):
                cfg = build_init_config(cluster.init_documents(token=TOKEN, certificate_key=KEY, dry_run=True),
                                        "bench", fill_node_defaults=False)
                root = scope / "nodes" / cluster.first.name
                run_steps(plan_init(cfg, "all"), NodeContext(cfg, NodeFS(root), out=out, show_secrets=False))
            pin = pki.ca_cert_hash(pki.load_cert(admin_ca_pem((root / "etc/kubernetes/admin.conf").read_bytes())))
            worker = cluster.workers[0]
            join = build_join_config([cluster.join_document(worker, token=TOKEN, certificate_key=KEY,
                                                            ca_pins=[pin], dry_run=True)], "bench")
            with dryrun.session(scope / "api", out, workflow="join", show_secrets=False):
                ctx = JoinNodeContext(join.provisional_init_config(), NodeFS(scope / "nodes" / worker.name),
                                      join=join, out=out, show_secrets=False)
                ctx.fetch = dryrun.cluster_info_fetch(dryrun.Tracker(scope / "api"), join.endpoint, TOKEN)
                run_steps(plan_join(join, "all"), ctx)
        return (time.perf_counter() - start) / count, (time.process_time() - cpu) / count


def dry_batch(count: int, pool: int, tmp: Path) -> dict[str, float]:
    from kubeboot.tasks.state.index import memory_of
    from kubeboot.workers.redis_server import EmbeddedRedis
    from kubeboot.workers.services import Services

    svc = Services.connect()
    log = (tmp / f"control-{pool}.log").open("ab")
    worker = subprocess.Popen([sys.executable, "-m", "kubeboot.workers.cli", "worker", "control", "--concurrency",
                               str(pool), "--include", "bench.noop"], stdout=log, stderr=log, start_new_session=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  filter(None, [os.getcwd(), os.environ.get("PYTHONPATH", "")]))})
    try:
        while svc.redis.get("kubeboot:queue:dry-run:consumer") is None:
            time.sleep(0.1)
        redis_pid = EmbeddedRedis(svc.settings.state_dir).pid() or 0
        fresh = bare_chains(svc, min(count, 200), BARE_HOPS, worker.pid, redis_pid, "fresh")
        doc = tmp / "batch.yaml"
        doc.write_text(json.dumps(batch_doc(count)))
        before = int(svc.redis.info("memory")["used_memory"])
        cpu0 = cpu_seconds(tree(worker.pid))
        redis0 = cpu_seconds([redis_pid]) if redis_pid else 0.0
        calls0 = int(svc.redis.info("stats")["total_commands_processed"])
        stats0 = command_calls(svc.redis)
        start = time.perf_counter()
        bound = str(BATCH_CONCURRENCY["value"])
        submitted = cli("submit", "batch", "-f", str(doc), "--dry-run", "--concurrency", bound, "-o", "json")
        batch_id = json.loads(submitted.stdout)["batch"]["id"]
        while svc.store.run_status(batch_id) not in ("succeeded", "failed"):
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(tree(worker.pid)) - cpu0
        redis_cpu = (cpu_seconds([redis_pid]) if redis_pid else 0.0) - redis0
        calls = int(svc.redis.info("stats")["total_commands_processed"]) - calls0
        stats = command_calls(svc.redis)
        top = sorted(((n - stats0.get(cmd, 0), cmd) for cmd, n in stats.items()), reverse=True)[:10]
        if svc.store.run_status(batch_id) != "succeeded":
            raise RuntimeError(f"batch {batch_id} failed: {svc.store.get_run(batch_id)}")
        after = int(svc.redis.info("memory")["used_memory"])
        print(f"  batch of {count} ended in {elapsed:.1f} s: {count / elapsed * 60:.1f} clusters/min, worker CPU "
              f"{cpu / count * 1000:.0f} ms and Redis CPU {redis_cpu / count * 1000:.0f} ms per cluster, "
              f"{calls / count:.0f} Redis commands per cluster, Redis memory +{(after - before) / count / 1024:.1f} "
              "KiB per cluster", flush=True)
        print("  Redis commands per cluster, most called: "
              + ", ".join(f"{cmd} {n / count:.0f}" for n, cmd in top if n > 0), flush=True)
        one = f"{batch_id}.b1"
        per_cluster_keys = sum(memory_of(svc.redis, r) for r in (one, f"{one}.b1-cp1", f"{one}.b1-w1"))
        status_in_process, status_cli = status_timings(svc, batch_id)
        hops = round((stats.get("lpush", 0) - stats0.get("lpush", 0)) / count)  # task messages per cluster
        bare_cpu = bare_chains(svc, min(count, 200), BARE_HOPS, worker.pid, redis_pid, "after")
        return {"seconds": elapsed, "per_cluster": elapsed / count, "per_minute": count / elapsed * 60,
                "hops": hops, "bare_cpu_per_chain": bare_cpu, "bare_fresh": fresh,
                "memory_per_cluster": (after - before) / count, "keys_per_cluster": per_cluster_keys,
                "status_in_process": status_in_process, "status_cli": status_cli, "cpu_per_cluster": cpu / count,
                "redis_cpu_per_cluster": redis_cpu / count, "commands_per_cluster": calls / count}
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)
        EmbeddedRedis(svc.settings.state_dir).stop()


def status_timings(svc: Any, batch_id: str) -> tuple[float, float]:
    """Seconds to build ``status BATCH -o json`` in this process, and for the whole CLI command."""
    from kubeboot.workers.parent_commands import render

    t0 = time.perf_counter()
    render(svc, batch_id, "json")
    in_process = time.perf_counter() - t0
    t0 = time.perf_counter()
    cli("status", batch_id, "-o", "json")
    return in_process, time.perf_counter() - t0


def bare_chains(svc: Any, chains: int, hops: int, worker_pid: int, redis_pid: int, tag: str) -> float:
    """CPU seconds (worker and Redis) per Celery chain of ``hops`` no-op tasks on the same worker and queue,
    at the batch's concurrency: what Celery alone costs for as many hops as a cluster has."""
    from celery import chain

    from bench.noop import DONE_KEY
    from kubeboot.workflows.routing import DRY_RUN_QUEUE

    app = svc.app()
    cpu0, redis0 = cpu_seconds(tree(worker_pid)), cpu_seconds([redis_pid]) if redis_pid else 0.0
    in_flight: list[str] = []
    for i in range(chains):
        run_id = f"bare-{tag}-{i}"
        sigs = [app.signature("kubeboot.bench.noop", args=(run_id, "bare"), immutable=True, queue=DRY_RUN_QUEUE)
                for _ in range(hops - 1)]
        sigs.append(app.signature("kubeboot.bench.done", args=(run_id,), immutable=True, queue=DRY_RUN_QUEUE))
        chain(*sigs).apply_async()
        in_flight.append(DONE_KEY.format(run_id))
        end = time.monotonic() + 600
        while len(in_flight) >= BATCH_CONCURRENCY["value"] or (i == chains - 1 and in_flight):
            found = svc.redis.blpop(in_flight, timeout=1)  # short waits: the client's socket timeout is shorter
            if found:
                in_flight.remove(found[0].decode() if isinstance(found[0], bytes) else found[0])
            elif time.monotonic() > end:
                raise RuntimeError("bare chains did not end within 600 s")
    cpu = cpu_seconds(tree(worker_pid)) - cpu0 + (cpu_seconds([redis_pid]) if redis_pid else 0.0) - redis0
    return cpu / chains


def command_calls(client: Any) -> dict[str, int]:
    """Calls per Redis command so far (``INFO commandstats``: ``cmdstat_lpush`` -> ``lpush``)."""
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in client.info("commandstats").items()}


def run_dry(count: int, pools: list[int], sample: int) -> None:
    print(f"(a) dry-run batch of {count} clusters (1 control plane + 1 worker, {ALGORITHM['value']}), one control "
          "worker; CPU = the worker's process tree and Redis")
    for pool in pools:
        with state_dir("kb-bench-batch-") as tmp:
            r = dry_batch(count, pool, tmp)
        with tempfile.TemporaryDirectory(prefix="kb-bench-local-") as d:
            wall, cpu = in_process(min(sample, count), Path(d))
        system_cpu = r["cpu_per_cluster"] + r["redis_cpu_per_cluster"]
        print(f"  pool {pool}: {r['per_minute']:8.1f} clusters/min  ({r['seconds']:.1f} s, "
              f"{r['per_cluster'] * 1000:.0f} ms per cluster; CPU {system_cpu * 1000:.0f} ms per cluster, of which "
              f"Redis {r['redis_cpu_per_cluster'] * 1000:.0f} ms; {r['commands_per_cluster']:.0f} Redis commands)")
        print(f"          in process ({min(sample, count)} clusters): {wall * 1000:.0f} ms, CPU {cpu * 1000:.0f} ms "
              f"per cluster   ratio CPU {system_cpu / cpu:.2f} (target <= 1.2), wall {r['per_cluster'] / wall:.2f}")
        bare = (r["bare_fresh"] + r["bare_cpu_per_chain"]) / 2
        print(f"          Celery alone: a chain of {BARE_HOPS} no-op tasks (a cluster sends {r['hops']:.0f} task "
              f"messages) on the same worker and queue, CPU {r['bare_fresh'] * 1000:.0f} ms before the batch, "
              f"{r['bare_cpu_per_chain'] * 1000:.0f} ms after: the floor of the ratio for any engine on Celery here "
              f"is {(cpu + bare) / cpu:.2f}; kubeboot's own CPU beyond it {(system_cpu - cpu - bare) * 1000:.0f} ms "
              "per cluster")
        print(f"          Redis memory per finished cluster: {r['memory_per_cluster'] / 1024:.1f} KiB (used_memory "
              f"delta); its 3 runs' keys {r['keys_per_cluster'] / 1024:.1f} KiB (MEMORY USAGE)")
        print(f"          status of the batch: {r['status_in_process'] * 1000:.0f} ms to build, "
              f"{r['status_cli'] * 1000:.0f} ms for `kubeboot status BATCH -o json`")


# --- (b) a sandbox batch against one cluster alone ---------------------------------------------------------

def sandbox_processes(state: Path) -> list[int]:
    from kubeboot.workers.redis_server import EmbeddedRedis
    from kubeboot.workers.sandbox_env import Sandbox

    box = Sandbox.load(state / "sandbox")
    pids = tree(box.supervisor_pid) if box else []
    redis_pid = EmbeddedRedis(state).pid()
    return pids + ([redis_pid] if redis_pid else [])


def _is_kubeboot(pid: int) -> bool:
    """A kubeboot worker or Redis (the engine), not a simulated machine's kubelet or static Pod."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"redis-server") for a in argv) or (b"kubeboot.workers.cli" in argv and b"worker" in argv)


def split_cpu(pids: list[int]) -> tuple[float, float]:
    """(the engine's CPU seconds, the simulated machines' CPU seconds) of ``pids``."""
    engine = [p for p in pids if _is_kubeboot(p)]
    return cpu_seconds(engine), cpu_seconds([p for p in pids if p not in engine])


def sandbox_run(clusters: int, concurrency: int) -> tuple[float, float, float]:
    """(seconds, engine CPU s, machines' CPU s) of a sandbox batch of ``clusters`` at ``concurrency``,
    sandbox up excluded."""
    with state_dir("kb-bench-sbx-") as state:
        try:
            cli("sandbox", "up", "--clusters", str(clusters), "--control-planes", "1", "--workers", "1")
            batch = str(state / "sandbox" / "batch.yaml")
            time.sleep(5)  # let the sandbox settle: its start-up is not the batch's work
            engine0, machines0 = split_cpu(sandbox_processes(state))
            start = time.perf_counter()
            result = cli("submit", "batch", "-f", batch, "--concurrency", str(concurrency), "--wait", "--timeout",
                         "3600s", "-o", "json", check=False)
            elapsed = time.perf_counter() - start
            engine, machines = split_cpu(sandbox_processes(state))
            view = json.loads(result.stdout)
            if view["batch"]["status"] != "succeeded":
                raise RuntimeError(f"sandbox batch failed: {view['batch']['error']}")
            return elapsed, engine - engine0, machines - machines0
        finally:
            cli("sandbox", "down", check=False)


def run_sandbox(clusters: int, concurrency: int) -> None:
    alone, alone_engine, alone_machines = sandbox_run(1, 1)
    seconds, engine, machines = sandbox_run(clusters, concurrency)
    expected = alone * clusters / concurrency
    print(f"(b) sandbox batch of {clusters} clusters (1+1) at concurrency {concurrency}, {os.cpu_count()} cores; CPU "
          "split between the engine (kubeboot's workers, Redis) and the simulated machines (kubelets, static Pods)")
    print(f"  one cluster alone: {alone:.1f} s; CPU {alone_engine:.1f} s engine + {alone_machines:.1f} s machines")
    print(f"  the batch: {seconds:.1f} s = {clusters / seconds * 60:.1f} clusters/min; CPU per cluster "
          f"{engine / clusters:.1f} s engine + {machines / clusters:.1f} s machines")
    print(f"  against one alone x {clusters} / {concurrency} = {expected:.1f} s: ratio {seconds / expected:.2f}; "
          f"against the CPU it needs on {os.cpu_count()} cores ({(engine + machines) / (os.cpu_count() or 1):.1f} s): "
          f"ratio {seconds / ((engine + machines) / (os.cpu_count() or 1)):.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = parser.add_subparsers(dest="part", required=True)
    dry = parts.add_parser("dry")
    dry.add_argument("--clusters", type=int, default=1000)
    dry.add_argument("--pool", default="1", help="control worker pool sizes to measure, e.g. 1,2")
    dry.add_argument("--sample", type=int, default=100, help="clusters of the in-process baseline")
    dry.add_argument("--concurrency", type=int, default=16, help="the dry-run batch's concurrency")
    dry.add_argument("--algorithm", default="RSA-2048", choices=["RSA-2048", "ECDSA-P256"],
                     help="the clusters' encryptionAlgorithm (kubeadm's default: RSA-2048)")
    sbx = parts.add_parser("sandbox")
    sbx.add_argument("--clusters", type=int, default=12)
    sbx.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    if args.part == "dry":
        ALGORITHM["value"] = args.algorithm
        BATCH_CONCURRENCY["value"] = args.concurrency
        run_dry(args.clusters, [int(p) for p in args.pool.split(",")], args.sample)
    else:
        run_sandbox(args.clusters, args.concurrency)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
