"""Which queues a live worker consumes: workers beat, ``status`` reads.

| key                                   | type   | content                                              |
|---------------------------------------|--------|------------------------------------------------------|
| ``kubeboot:queue:<name>:consumer``    | string | hostname of the worker that beat last for the queue; |
|                                       |        | PX = ``CONSUMER_TTL``, renewed every ``BEAT_EVERY``  |

Expiry is Redis's own clock, so readers and workers on machines with skewed clocks agree. Several
workers of one queue overwrite each other's beat: the key says "somebody consumes it", which is the
question ``status`` asks ("waiting: no worker consumes node.cp2").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import redis

from kubeboot.tasks.state.keys import queue_consumer_key
from kubeboot.tasks.state.records import text

BEAT_EVERY: Final = 2.0  # seconds between two beats of a worker
CONSUMER_TTL: Final = 3 * BEAT_EVERY  # a worker that missed three beats is gone


def beat(client: redis.Redis, queues: Iterable[str], hostname: str, ttl: float = CONSUMER_TTL) -> None:
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.set(queue_consumer_key(queue), hostname, px=max(1, round(ttl * 1000)))
        pipe.execute()


def consumer(client: redis.Redis, queue: str) -> str | None:
    """The hostname of a worker that consumed ``queue`` within the last ``CONSUMER_TTL``, else None."""
    raw = client.get(queue_consumer_key(queue))
    return None if raw is None else text(raw)
