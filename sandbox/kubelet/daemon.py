"""The sandbox kubelet daemon of one node: ``python -m kubeboot.sandbox.kubelet --root R --node-name N --address A``.

Reads: ``<root>/var/lib/kubelet/config.yaml`` (once, at start, as the kubelet), the static Pod directory
(every 0.5 s), ``kubelet.conf`` / ``bootstrap-kubelet.conf`` (``registration``), and with
``rotateCertificates: true`` the client certificate store (``certrotation``).
Writes: ``kubelet.pid`` (while running), ``kubelet.lock`` (held: one daemon per node root), the pods'
files (``supervisor``); logs to stderr (the driver sends it to ``kubelet.log``).

Serves ``GET /healthz`` -> 200 ``ok`` on ``healthzBindAddress:healthzPort`` with loopback mapped to the
node's address, from the moment it supervises its pods. On SIGTERM or SIGINT it stops supervising and
exits, leaving the pod processes running, as stopping a real kubelet leaves its containers running; the
next daemon adopts them.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from kubeboot.sandbox.addresses import map_host
from kubeboot.sandbox.kubelet import process
from kubeboot.sandbox.kubelet.layout import Layout, node_path, read_settings
from kubeboot.sandbox.kubelet.staticpods import ManifestDir
from kubeboot.sandbox.kubelet.supervisor import Supervisor
from kubeboot.tasks.redaction import install_filter

log = logging.getLogger("kubeboot.sandbox.kubelet")
POLL_SECONDS = 0.5


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/healthz":
            self.send_error(404)
            return
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: health checks poll often
        pass


def serve_healthz(host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _Healthz)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    return server


@contextlib.contextmanager
def node_lock(layout: Layout) -> Iterator[None]:
    """Hold the node's kubelet lock: a second daemon for the same root refuses to start."""
    layout.sandbox_dir.mkdir(parents=True, exist_ok=True)
    with layout.lock_file.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = process.read_pid(layout.pid_file)
            raise SystemExit(f"another sandbox kubelet runs for {layout.root} (pid {other})") from None
        process.write_pid(layout.pid_file, os.getpid())
        try:
            yield
        finally:
            if process.read_pid(layout.pid_file) == os.getpid():
                layout.pid_file.unlink(missing_ok=True)


def run(root: Path, node_name: str, address: str) -> int:
    layout = Layout(root)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping the kubelet, leaving its pods running", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with node_lock(layout):
        settings = read_settings(root)
        log.info("kubelet for node %s at %s, root %s, static pods in %s", node_name, address, root,
                 settings.static_pod_path or "(none)")
        supervisor = Supervisor(root, node_name, address)
        supervisor.adopt()
        manifests = ManifestDir(node_path(root, settings.static_pod_path), node_name) \
            if settings.static_pod_path else None
        supervisor.sync(manifests.read() if manifests else {})
        server = None
        if settings.healthz_port > 0:
            host = map_host(settings.healthz_bind_address, address)
            server = serve_healthz(host, settings.healthz_port)
            log.info("serving healthz on http://%s:%d/healthz", host, settings.healthz_port)
        node = _start_registration(root, node_name, address, supervisor, stop)
        rotation = _start_rotation(root, node_name, address, stop) if settings.rotate_certificates else None
        try:
            while not stop.wait(POLL_SECONDS):
                try:
                    supervisor.sync(manifests.read() if manifests else {})
                except Exception:  # a kubelet outlives one bad sync (a full disk, a racing file): next poll
                    log.exception("sync of the static pods failed; retrying")
        finally:
            if server is not None:
                server.shutdown()
            for thread in (node, rotation):
                if thread is not None:
                    thread.join(timeout=5)
    log.info("kubelet stopped")
    return 0


def _start_registration(root: Path, node_name: str, address: str, supervisor: Supervisor,
                        stop: threading.Event) -> threading.Thread | None:
    """Node registration and TLS bootstrap in the background (they wait for an API server)."""
    try:
        from kubeboot.sandbox.kubelet.registration import NodeAgent
    except ImportError as e:  # the kubernetes client is missing: pods still run
        log.warning("node registration disabled: %s", e)
        return None
    agent = NodeAgent(root, node_name, address, pods=supervisor.mirror_sources)
    thread = threading.Thread(target=agent.run, args=(stop,), name="node-status", daemon=True)
    thread.start()
    return thread


def _start_rotation(root: Path, node_name: str, address: str, stop: threading.Event) -> threading.Thread | None:
    """The client certificate manager (``rotateCertificates: true``) in the background."""
    try:
        from kubeboot.sandbox.kubelet import certrotation
    except ImportError as e:  # the kubernetes client is missing
        log.warning("client certificate rotation disabled: %s", e)
        return None
    return certrotation.start(root, node_name, address, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubeboot.sandbox.kubelet", description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, type=Path, help="node root: every kubeadm path lives under it")
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--address", required=True, help="the node's own loopback address")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname).1s [kubelet] %(message)s")
    install_filter()  # the node's bootstrap token passes through here (TLS bootstrap): never logged
    return run(args.root.resolve(), args.node_name, args.address)
