"""The TCP load balancer in front of a sandbox cluster's API servers: its ``controlPlaneEndpoint``.

    python -m kubeboot.sandbox.loadbalancer --listen 127.77.0.254:6443 \\
        --backend 127.77.0.1:6443=<cp1 root>/etc/kubernetes/pki/ca.crt --backend ... [--state FILE]

What kind's external load balancer (haproxy, ``mode tcp``, ``option httpchk GET /healthz``, ``check-ssl``)
is to a kind cluster with several control-plane nodes: one address of its own that forwards every TCP
connection, TLS untouched, to an API server that answers. Every ``CHECK_INTERVAL`` seconds each backend is
asked ``GET /readyz`` over HTTPS, verified with that node's cluster CA (``ca.crt`` under its root: a node
not bootstrapped yet has none and counts as down); ``FALL`` failed checks in a row take a backend out,
one passing check puts it back (haproxy's ``fall``/``rise``). Connections go round-robin to the backends
that are up; a backend that refuses the connection meanwhile is skipped for the next one (haproxy's
``redispatch``); with none up the client's connection is closed at once.

Reads: the CA files named. Writes: ``--state`` (JSON, atomically, on every change of a backend's state:
``{"listen", "pid", "backends": [{"address", "up", "reason"}]}``) for ``kubeboot sandbox status``; log
lines on stderr for each change. SIGTERM / SIGINT stop it (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

from kubeboot.tasks.fsutil import atomic_write

CHECK_INTERVAL = 1.0
CHECK_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0
FALL = 3  # failed checks in a row before a backend is taken out
BUFFER = 64 * 1024
log = logging.getLogger("loadbalancer")


@dataclass
class Backend:
    host: str
    port: int
    ca_file: str
    up: bool = False
    fails: int = 0
    reason: str = "not checked yet"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_backend(text: str) -> Backend:
    """``HOST:PORT=CAFILE``."""
    target, eq, ca_file = text.partition("=")
    host, colon, port = target.rpartition(":")
    if not (eq and colon and host and port.isdigit() and ca_file):
        raise argparse.ArgumentTypeError(f"--backend {text!r}: expected HOST:PORT=CAFILE")
    return Backend(host, int(port), ca_file)


async def readyz(backend: Backend, timeout: float = CHECK_TIMEOUT) -> tuple[bool, str]:
    """One health check: (ready, reason)."""
    if not os.path.exists(backend.ca_file):
        return False, f"no cluster CA at {backend.ca_file} yet"
    try:
        ctx = ssl.create_default_context(cafile=backend.ca_file)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(backend.host, backend.port, ssl=ctx, server_hostname=backend.host), timeout)
    except (OSError, ssl.SSLError, TimeoutError) as e:
        return False, _reason(e)
    try:
        writer.write(f"GET /readyz HTTP/1.1\r\nHost: {backend.address}\r\nUser-Agent: kubeboot-sandbox-lb\r\n"
                     "Connection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        return code == 200, f"readyz {code}" if code else "no HTTP answer"
    except (OSError, ssl.SSLError, TimeoutError) as e:
        return False, _reason(e)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout)


def _reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    return f"{type(e).__name__}: {e}".splitlines()[0][:200]


class LoadBalancer:
    def __init__(self, listen: tuple[str, int], backends: list[Backend], state_file: Path | None = None) -> None:
        self.listen = listen
        self.backends = backends
        self.state_file = state_file
        self._turn = itertools.count()

    # --- health ------------------------------------------------------------------------------------
    def record(self, backend: Backend, ready: bool, reason: str) -> bool:
        """Apply one check's result (fall/rise); True when the backend changed state."""
        backend.reason = reason
        if ready:
            backend.fails = 0
            changed, backend.up = not backend.up, True
            return changed
        backend.fails += 1
        if backend.up and backend.fails >= FALL:
            backend.up = False
            return True
        return False

    async def watch(self, backend: Backend) -> None:
        first = True
        while True:
            ready, reason = await readyz(backend)
            if self.record(backend, ready, reason) or first:
                up = sum(b.up for b in self.backends)
                log.info("backend %s is %s (%s); %d of %d backends up", backend.address,
                         "UP" if backend.up else "DOWN", reason, up, len(self.backends))
                self.save()
                first = False
            await asyncio.sleep(CHECK_INTERVAL)

    def save(self) -> None:
        if self.state_file is None:
            return
        state = {"listen": f"{self.listen[0]}:{self.listen[1]}", "pid": os.getpid(),
                 "backends": [{"address": b.address, "up": b.up, "reason": b.reason} for b in self.backends]}
        atomic_write(self.state_file, json.dumps(state, indent=2) + "\n")

    # --- forwarding ------------------------------------------------------------------------------
    def candidates(self) -> list[Backend]:
        """The backends that are up, starting at the next one in turn (round-robin)."""
        up = [b for b in self.backends if b.up]
        if not up:
            return []
        start = next(self._turn) % len(up)
        return up[start:] + up[:start]

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            await self._forward(client_r, client_w)
        except asyncio.CancelledError:  # shutting down: the connection just ends
            client_w.close()
        except Exception:  # one broken connection never stops the balancer
            log.exception("forwarding a connection failed")
            client_w.close()

    async def _forward(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        _nodelay(client_w)
        for backend in self.candidates():
            try:
                server_r, server_w = await asyncio.wait_for(
                    asyncio.open_connection(backend.host, backend.port), CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as e:
                log.info("backend %s refused a connection (%s): trying the next one", backend.address, _reason(e))
                continue
            _nodelay(server_w)
            await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
            for w in (server_w, client_w):
                w.close()
            return
        client_w.close()  # no API server up: the client sees the connection closed, as with haproxy

    async def serve(self, stop: asyncio.Event) -> None:
        server = await asyncio.start_server(self.handle, self.listen[0], self.listen[1], reuse_address=True)
        log.info("load balancer listening on %s:%d for %s", *self.listen, ", ".join(b.address for b in self.backends))
        self.save()
        watchers = [asyncio.create_task(self.watch(b)) for b in self.backends]
        async with server:
            await stop.wait()
        for task in watchers:
            task.cancel()
        log.info("load balancer stopped")


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side (a client's shutdown reaches the server)."""
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubeboot.sandbox.loadbalancer", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT to listen on")
    parser.add_argument("--backend", action="append", type=parse_backend, required=True,
                        help="HOST:PORT=CAFILE of an API server (repeat)")
    parser.add_argument("--state", type=Path, default=None, help="JSON file with the backends' states")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname).1s [loadbalancer] %(message)s")
    balancer = LoadBalancer((host, int(port)), args.backend, args.state)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await balancer.serve(stop)

    try:
        asyncio.run(run())
    except OSError as e:
        log.error("cannot listen on %s: %s", args.listen, e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
