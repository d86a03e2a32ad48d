"""A node worker and a control worker on an embedded Redis in a temp state dir, for the benchmarks that
drive runs through real workers (bench.orchestration, bench.worker_memory).

Each worker is started as ``kubeboot worker node|control`` starts it, in its own session (a stop reaches
its pool children), output appended to ``<tmp>/workers.log``; ``--include`` names the bench's own task
module. This process uses the same state dir (``KUBEBOOT_STATE_DIR``, no ``KUBEBOOT_REDIS_URL``), so
``svc`` talks to the same Redis and ``stop`` stops it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DEADLINE = 120.0  # a bound for the workers to come up on a busy host, not a figure


class Workers:
    def __init__(self, tmp: Path, node: str, include: str, env: dict[str, str] | None = None) -> None:
        self.tmp, self.node, self.include = tmp, node, include
        self.root = tmp / "root"
        self.log = tmp / "workers.log"
        # The workers import what this process imports (bench.orchestration --before: a link tree first
        # on PYTHONPATH).
        path = os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH", "")]))
        self.env = {**os.environ, "KUBEBOOT_STATE_DIR": str(tmp / "state"), "PYTHONPATH": path, **(env or {})}
        self.env.pop("KUBEBOOT_REDIS_URL", None)
        os.environ["KUBEBOOT_STATE_DIR"] = self.env["KUBEBOOT_STATE_DIR"]
        os.environ.pop("KUBEBOOT_REDIS_URL", None)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        from kubeboot.workers.services import Services

        self.svc = Services.connect()
        self.app = self.svc.app()

    def start(self) -> None:
        cli = [sys.executable, "-m", "kubeboot.workers.cli", "worker"]
        common = ["--include", self.include, "--loglevel", "WARNING"]
        args = {"node": ["node", "--id", self.node, "--root", str(self.root)], "control": ["control"]}
        with self.log.open("ab") as log:
            for name, a in args.items():
                self.procs[name] = subprocess.Popen([*cli, *a, *common], env=self.env, stdout=log, stderr=log,
                                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready()

    def wait_ready(self) -> None:
        from kubeboot.tasks.state.presence import consumer

        # Node workers ignore broadcast commands (no ping): a worker is up once it beats for its queue.
        end = time.monotonic() + DEADLINE
        while not all(consumer(self.svc.redis, q) for q in (f"node.{self.node}", "control")):
            if time.monotonic() > end:
                raise RuntimeError(f"workers did not start; see {self.log}")
            time.sleep(0.1)

    def stop(self) -> None:
        from kubeboot.workers.redis_server import EmbeddedRedis

        for proc in self.procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            proc.wait(30)
        EmbeddedRedis(self.svc.settings.state_dir).stop()
