"""What a worker does beside running tasks so that no run hangs (connected by ``celery_app.make_app``).

In the worker's main process, once its consumer is up (``worker_ready``), and from then on from one
daemon thread until ``worker_shutdown``:

- beat every ``presence.BEAT_EVERY`` seconds for every queue it consumes (``tasks.state.presence``), so
  ``status`` can say when nobody consumes a run's next queue;
- a control worker sweeps the run state's lease index at start-up and every ``liveness.SWEEP_EVERY``
  seconds, re-sending (re-signed: node workers hold no signing key) what a dead worker left behind
  (``workflows.liveness.sweep``): a node worker restarted after a SIGKILL finds its dead phases sent
  again as soon as their lease lapses, without waiting for the broker's visibility timeout;
- a control worker also sweeps the parent runs (clusters, batches) whose look-again time came
  (``workflows.parent_tasks.sweep``).

Signals fire only in worker processes: a CLI process that builds the app is unaffected.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import signals

log = logging.getLogger("kubeboot.worker")
_stop = threading.Event()


def connect() -> None:
    signals.worker_ready.connect(_on_ready, weak=False, dispatch_uid="kubeboot.heartbeat.ready")
    signals.worker_shutdown.connect(_on_shutdown, weak=False, dispatch_uid="kubeboot.heartbeat.shutdown")


def _on_ready(sender: Any = None, **_: Any) -> None:
    from kubeboot.tasks import runtime

    hostname = str(sender.hostname)
    queues = set(sender.app.amqp.queues.consume_from)
    _stop.clear()
    worker = _Heartbeat(sender.app, runtime.current(), queues, hostname)
    worker.tick(sweep=True)
    threading.Thread(target=worker.loop, name="kubeboot-heartbeat", daemon=True).start()


def _on_shutdown(**_: Any) -> None:
    _stop.set()


class _Heartbeat:
    def __init__(self, app: Any, rt: Any, queues: set[str], hostname: str) -> None:
        self.app, self.rt, self.queues, self.hostname = app, rt, queues, hostname

    def loop(self) -> None:
        from kubeboot.tasks.state.presence import BEAT_EVERY
        from kubeboot.workflows.liveness import SWEEP_EVERY

        last_sweep = time.monotonic()
        while not _stop.wait(BEAT_EVERY):
            due = time.monotonic() - last_sweep >= SWEEP_EVERY
            if due:
                last_sweep = time.monotonic()
            self.tick(sweep=due)

    def tick(self, *, sweep: bool) -> None:
        from kubeboot.tasks.state import presence
        from kubeboot.workflows.liveness import sweep as sweep_runs
        from kubeboot.workflows.parent_tasks import sweep as parent_sweep
        from kubeboot.workflows.routing import CONTROL_QUEUE

        try:
            presence.beat(self.rt.redis, self.queues, self.hostname)
            # Only the control side can re-send (a chain is signed, and node workers hold no signing key).
            if sweep and self.rt.role == "control":
                resent = sweep_runs(self.app, self.rt.redis, self.rt.store)
                if resent:
                    log.warning("[recovery] %s sent again: %s", self.hostname, ", ".join(resent))
                if CONTROL_QUEUE in self.queues:  # clusters and batches are looked after by control workers
                    parent_sweep(self.app)
        except Exception as e:  # Redis restarting: the next tick tries again
            log.warning("heartbeat of %s failed: %s", self.hostname, e)
