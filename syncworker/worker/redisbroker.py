"""kombu's Redis transport, keeping one redis-py client per connection pool.

kombu builds a new ``redis.Redis`` for each message it takes and each it acknowledges
(``Channel.conn_or_acquire`` without a client), and redis-py fills a table of about 170
reply callbacks in every client it builds: about 0.1 ms of the worker's CPU each time,
twice per task, for an object that only wraps the channel's connection pool. The client
holds no connection of its own, so one per pool serves every call; a new pool (kombu makes
one after a disconnection) gets a new client.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

__all__ = ["REDIS_SCHEMES", "Transport"]

#: Broker URL schemes this transport serves (Sentinel and the others keep kombu's own).
REDIS_SCHEMES = ("redis", "rediss")


class Channel(kombu_redis.Channel):
    _shared_client: redis.Redis | None = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # kombu caches these itself (``client``, ``subclient``)
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = super()._create_client()  # type: ignore[no-untyped-call]
        return shared


class Transport(kombu_redis.Transport):
    Channel = Channel
