"""A worker whose acknowledgement was lost with the broker reconnects instead of idling for ever.

kombu's Redis transport counts a delivered message against the prefetch limit until its ack has reached
Redis. An ack that fails because Redis is away at that moment is logged by kombu (``Couldn't ack ...,
reason: ConnectionError``, CRITICAL) and swallowed, and the message stays counted: with a prefetch of one
(every kubeboot worker) the consumer never asks Redis for another message. A worker that keeps Celery's
remote control notices the outage through its broadcast subscription and restarts its consumer, which
clears the count; a node worker has no remote control (``workers.celery_app``), so it would sit idle
for good while its heartbeat thread, which has a Redis client of its own, goes on beating.

Here every request notes an ack or reject that did not reach the broker, and a timer of the consumer's
event loop (every ``CHECK_EVERY`` s) raises a connection error inside the loop when one did: Celery's own
recovery takes over as for any lost connection ("Connection to broker lost", the unacknowledged messages
restored to their queues, a new connection and a fresh prefetch count). The restored message is
delivered again; the run state makes that copy of a phase a duplicate like any redelivery
(``tasks.phasetask``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

from celery import bootsteps
from celery.worker.request import Request

log = logging.getLogger("kubeboot.worker")

CHECK_EVERY: Final = 1.0  # seconds between looks at the flag; a lost ack is rare, a look costs nothing
_lost = threading.Event()


class WatchedRequest(Request):  # type: ignore[misc]
    """Celery's request, noting an ack or reject whose message the broker did not take."""

    def acknowledge(self) -> None:
        pending = not self.acknowledged
        super().acknowledge()
        if pending and not self._message.acknowledged:
            _lost.set()

    def reject(self, requeue: bool = False) -> None:
        pending = not self.acknowledged
        super().reject(requeue=requeue)
        if pending and not self._message.acknowledged:
            _lost.set()


class LostAckWatch(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs after the consumer built its task strategies (``Tasks``): rebuilds the ones it kept with
    ``WatchedRequest`` and starts the timer; on a consumer restart, both again."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.tref: Any = None

    def start(self, c: Any) -> None:
        # Only the strategies present: another step may have removed some (workers.task_allowlist).
        for name in list(c.strategies):
            task = c.app.tasks[name]
            if task.Request is not WatchedRequest:
                task.Request = WatchedRequest
                c.strategies[name] = task.start_strategy(c.app, c)
        _lost.clear()  # a new connection: what was lost with the old one is restored by Celery
        if c.timer is not None:
            self.tref = c.timer.call_repeatedly(CHECK_EVERY, check, priority=10)

    def stop(self, c: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop


def check() -> None:
    """In the consumer's event loop: a connection error (which the loop propagates to Celery's
    reconnect) when an ack or reject was lost."""
    if _lost.is_set():
        _lost.clear()
        log.warning("[worker] an acknowledgement did not reach the broker: reconnecting, so that the "
                    "message is restored and this worker takes new ones")
        raise ConnectionError("an acknowledgement was lost with the broker connection")


def install(app: Any) -> None:
    if LostAckWatch not in app.steps["consumer"]:
        app.steps["consumer"].add(LostAckWatch)
