"""Which queues a live worker consumes, and which workers are alive: workers beat, ``status`` and the
recovery sweep read.

| key                                   | type   | content                                              |
|---------------------------------------|--------|------------------------------------------------------|
| ``kubeboot:queue:<name>:consumer``    | string | hostname of the worker that beat last for the queue; |
|                                       |        | PX = ``CONSUMER_TTL``, renewed every ``BEAT_EVERY``  |
| ``kubeboot:worker:<hostname>:alive``  | string | when this worker process started, epoch ms of        |
|                                       |        | Redis's clock; same PX, same renewal                 |

Expiry is Redis's own clock, so readers and workers on machines with skewed clocks agree. Several
workers of one queue overwrite each other's beat: the key says "somebody consumes it", which is the
question ``status`` asks ("waiting: no worker consumes node.cp2"). A worker's start time tells the
sweep whether the worker that last ran a phase is the one alive now or an earlier process of the same
name that died (a worker restarted with the same command line).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import redis

from kubeboot.tasks.state.keys import queue_consumer_key, worker_alive_key
from kubeboot.tasks.state.records import text

BEAT_EVERY: Final = 2.0  # seconds between two beats of a worker
CONSUMER_TTL: Final = 3 * BEAT_EVERY  # a worker that missed three beats is gone
_started_ms: int | None = None  # this process's first beat


def now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def beat(client: redis.Redis, queues: Iterable[str], hostname: str, ttl: float = CONSUMER_TTL) -> None:
    global _started_ms  # noqa: PLW0603 - one start time per worker process, taken at its first beat
    if _started_ms is None:
        _started_ms = now_ms(client)
    px = max(1, round(ttl * 1000))
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.set(queue_consumer_key(queue), hostname, px=px)
        pipe.set(worker_alive_key(hostname), _started_ms, px=px)
        pipe.execute()


def consumer(client: redis.Redis, queue: str) -> str | None:
    """The hostname of a worker that consumed ``queue`` within the last ``CONSUMER_TTL``, else None."""
    raw = client.get(queue_consumer_key(queue))
    return None if raw is None else text(raw)


def worker_since(client: redis.Redis, hostname: str) -> int | None:
    """When the live worker ``hostname`` started (epoch ms, Redis's clock), or None if none is alive."""
    raw = client.get(worker_alive_key(hostname))
    return None if raw is None else int(text(raw))
