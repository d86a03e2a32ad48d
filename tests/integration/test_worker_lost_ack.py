"""A worker whose ack is lost with Redis (down when the task ends) takes new tasks once Redis is back.

Real redis-server, a real Celery worker process (prefork, one process, prefetch one, no remote control:
the node worker's shape) with ``workers.consumer_watch`` installed. Without it, kombu keeps the message
whose ack failed counted against the prefetch limit and the worker never asks for another one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from kubeboot.workers.consumer_watch import CHECK_EVERY
from kubeboot.workers.redis_server import find_redis_server

pytestmark = pytest.mark.integration

DEADLINE = 120.0  # bound of every wait on a busy shared machine, never an assertion

APP = '''
import os, pathlib, time
from celery import Celery
from kubeboot.workers import consumer_watch

app = Celery("lostack", broker=os.environ["BROKER"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, worker_enable_remote_control=False,
                broker_connection_retry_on_startup=True, broker_connection_max_retries=None,
                broker_transport_options={"visibility_timeout": 3600})
consumer_watch.install(app)
MARKS = pathlib.Path(os.environ["MARKS"])


@app.task(name="lostack.work")
def work(tag, wait_for=""):
    (MARKS / f"{tag}.started").touch()
    while wait_for and not (MARKS / wait_for).exists():
        time.sleep(0.05)
    (MARKS / f"{tag}.done").touch()
'''


def wait_for(what: str, ok: Callable[[], bool], detail: Callable[[], str],
             worker: subprocess.Popen[bytes] | None = None) -> None:
    end = time.monotonic() + DEADLINE
    while not ok():
        if time.monotonic() > end or (worker is not None and worker.poll() is not None):
            raise AssertionError(f"gave up waiting for {what}:\n{detail()}")
        time.sleep(0.1)


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.workdir, self.sock = workdir, workdir / "redis.sock"
        self.url = f"redis+socket://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([str(find_redis_server()), "--port", "0", "--unixsocket", str(self.sock),
                                      "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(unix_socket_path=str(self.sock))
        wait_for("redis-server", lambda: self._pings(client), lambda: "")

    @staticmethod
    def _pings(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


@pytest.fixture
def setup() -> Iterator[tuple[Redis, Path, subprocess.Popen[bytes], Path]]:
    workdir = Path(tempfile.mkdtemp(prefix="kb-lostack-"))  # short: a unix socket path fits ~100 bytes
    (workdir / "lostack.py").write_text(APP)
    marks = workdir / "marks"
    marks.mkdir()
    server = Redis(workdir)
    server.start()
    env = {**os.environ, "BROKER": server.url, "MARKS": str(marks),
           "PYTHONPATH": os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")])}
    log = workdir / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "lostack", "worker", "-c", "1", "-P",
                                   "prefork", "--without-mingle", "--without-gossip", "--without-heartbeat",
                                   "-l", "info"], cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield server, marks, worker, log
    finally:
        worker.kill()
        worker.wait(timeout=30)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def send(url: str, tag: str, wait_for: str = "") -> None:
    from celery import Celery

    app = Celery("lostack", broker=url)
    try:
        app.send_task("lostack.work", (tag, wait_for))
    finally:
        app.close()


def test_a_worker_whose_ack_was_lost_takes_the_next_task(
        setup: tuple[Redis, Path, subprocess.Popen[bytes], Path]) -> None:
    server, marks, worker, log = setup
    text = lambda: log.read_text(errors="replace")  # noqa: E731
    for n in range(5):  # acks that reach Redis are never taken for lost ones
        send(server.url, f"ok{n}")
    wait_for("the first tasks", lambda: all((marks / f"ok{n}.done").exists() for n in range(5)), text, worker)
    time.sleep(3 * CHECK_EVERY)  # the watch looks a few times
    assert "did not reach the broker" not in text() and "Connection to broker lost" not in text()
    send(server.url, "first", wait_for="go")
    wait_for("the first task to start", (marks / "first.started").exists, text, worker)
    server.stop()  # Redis goes away while the task runs ...
    (marks / "go").touch()  # ... and the task ends: its ack cannot reach Redis
    wait_for("the lost ack", lambda: "Couldn't ack" in text(), text, worker)
    server.start()
    send(server.url, "second")
    wait_for("the second task to run", (marks / "second.done").exists, text, worker)
    assert "an acknowledgement did not reach the broker" in text()
    assert worker.poll() is None
