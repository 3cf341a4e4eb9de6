"""The beat lock: which of several beats fires, held in Redis with a TTL and renewed while
its holder runs.

Redis keys (under RedBeat's key prefix, ``settings.REDBEAT_PREFIX``):

    {prefix}:lock     string, the holder's random token; TTL the lock timeout.

The lock is never a proof by itself: a holder paused past the TTL (a stopped process, a
network partition) still believes it holds it. So every write a holder makes to the
schedule goes through :meth:`Leadership.write_if_held`, which checks the token and writes
in one Lua call (``coord/lua/beat_*.lua``): a beat that lost the lock writes nothing, and
cannot fire.
"""

from __future__ import annotations

import uuid
from typing import Any

from redis import Redis

from syncworker.coord.scripts import register

__all__ = ["Leadership"]


class Leadership:
    """This process's hold on the beat lock ``key``: acquired with a fresh token, renewed
    for ``timeout`` seconds at each :meth:`hold`."""

    def __init__(self, client: Redis, key: str, timeout: float) -> None:
        self.key = key
        self.timeout = timeout
        self._client = client
        self._token: str | None = None
        self._renew = register(client, "beat_renew")
        self._release = register(client, "delete_if_equal")
        self._write = register(client, "beat_write_if_held")

    @property
    def token(self) -> str | None:
        """This holding's token (a new one each time the lock is taken); None when the last
        :meth:`hold` or write found the lock not ours."""
        return self._token

    def hold(self) -> bool:
        """Renew the lock if it is still ours, else try to take it; False when another
        process holds it. Raises redis-py's errors when Redis does not answer."""
        if self._token is not None and self._renew([self.key], [self._token, self._ttl_ms()]):
            return True
        self._token = None
        token = uuid.uuid4().hex
        if self._client.set(self.key, token, nx=True, px=self._ttl_ms()):
            self._token = token
        return self._token is not None

    def write_if_held(self, entry_key: str, schedule_key: str, meta: str, score: float) -> bool:
        """Write an entry's meta and due time only while the lock is ours (else forget it)."""
        args: list[Any] = [self._token, meta, score]
        if self._token is not None and self._write([self.key, entry_key, schedule_key], args):
            return True
        self._token = None
        return False

    def release(self) -> None:
        """Give the lock up, so that a standing-by beat takes over without waiting its TTL."""
        token, self._token = self._token, None
        if token is not None:
            self._release([self.key], [token])

    def _ttl_ms(self) -> int:
        return max(int(self.timeout * 1000), 1)
