"""A worker whose acknowledgement was lost with the broker reconnects instead of idling for ever.

kombu's Redis transport counts a delivered message against the prefetch limit until its ack has reached
Redis. An ack that fails because Redis is away at that moment is logged by kombu (``Couldn't ack ...,
reason: ConnectionError``, CRITICAL) and swallowed, and the message stays counted: with a prefetch of one
(every kubeboot worker) the consumer never asks Redis for another message. A worker that keeps Celery's
remote control notices the outage through its broadcast subscription and restarts its consumer, which
clears the count; a node worker has no remote control (``workers.celery_app``), so it would sit idle
for good while its heartbeat thread, which has a Redis client of its own, goes on beating.

Here every request notes the message whose ack or reject it asked for, and a timer of the consumer's
event loop (every ``CHECK_EVERY`` s) raises a connection error inside the loop when one such message is
still not acknowledged two looks later: Celery's own
recovery takes over as for any lost connection ("Connection to broker lost", the unacknowledged messages
restored to their queues, a new connection and a fresh prefetch count). The restored message is
delivered again; the run state makes that copy of a phase a duplicate like any redelivery
(``tasks.phasetask``).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from celery import bootsteps
from celery.worker.request import Request

log = logging.getLogger("kubeboot.worker")

CHECK_EVERY: Final = 1.0  # seconds between looks; a lost ack is rare, a look costs a dict walk
# Messages whose ack or reject Celery asked for, by id, with the look it was asked before. Celery runs
# the ack itself soon after (``call_soon``: the loop's next turn, before its timers); a message still not
# acknowledged two looks later has lost its ack. Main thread only: requests and timers both run there.
_asked: dict[int, tuple[Any, int]] = {}
_looks = [0]


class WatchedRequest(Request):  # type: ignore[misc]
    """Celery's request, noting each message whose ack or reject it asked for."""

    def acknowledge(self) -> None:
        if not self.acknowledged:
            _asked[id(self._message)] = (self._message, _looks[0])
        super().acknowledge()

    def reject(self, requeue: bool = False) -> None:
        if not self.acknowledged:
            _asked[id(self._message)] = (self._message, _looks[0])
        super().reject(requeue=requeue)


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
        _asked.clear()  # a new connection: what was lost with the old one is restored by Celery
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
    _looks[0] += 1
    lost = []
    for key, (message, look) in list(_asked.items()):
        if message.acknowledged:
            del _asked[key]
        elif _looks[0] - look >= 2:
            lost.append(message.delivery_tag)
            del _asked[key]
    if lost:
        log.warning("[worker] an acknowledgement did not reach the broker (%s): reconnecting, so that the "
                    "message is restored and this worker takes new ones", ", ".join(map(str, lost)))
        raise ConnectionError("an acknowledgement was lost with the broker connection")


def install(app: Any) -> None:
    if LostAckWatch not in app.steps["consumer"]:
        app.steps["consumer"].add(LostAckWatch)
