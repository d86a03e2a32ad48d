"""One Redis client object per kombu channel, not one per message.

kombu's Redis transport builds a new ``redis.Redis`` for every message it publishes or acknowledges
outside a pipeline (``Channel.conn_or_acquire`` calls ``_create_client``); with redis-py 8 each one copies
its table of ~170 response callbacks, which costs a worker more CPU per task than the command it sends
(a phase task publishes its chain's next link and an event, and the worker's main process three events
and the ack). The client is only a façade over the channel's connection pool, which kombu keeps per
channel and re-creates after a disconnect; so one client per channel and pool serves every message of
that channel, from any thread (redis-py's pool hands out a connection per command). The asynchronous
client (the worker's BRPOP) is left as kombu makes it.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

_ORIGINAL = kombu_redis.Channel._create_client
_ATTR = "_kubeboot_sync_client"


def _create_client(self: Any, asynchronous: bool = False) -> Any:
    if asynchronous:
        return _ORIGINAL(self, True)
    pool = self.pool
    client = self.__dict__.get(_ATTR)
    if client is None or client.connection_pool is not pool:
        client = _ORIGINAL(self, False)
        self.__dict__[_ATTR] = client
    return client


def install() -> None:
    kombu_redis.Channel._create_client = _create_client
