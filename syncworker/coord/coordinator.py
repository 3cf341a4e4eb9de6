"""The :class:`Coordinator`: one object per process for everything syncworker keeps in Redis."""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from syncworker.coord.backend import redact_url, redis_errors, text, translated
from syncworker.coord.keys import TAG_CACHE_TTL
from syncworker.coord.locks import LocksMixin
from syncworker.coord.runs import RunsMixin
from syncworker.coord.walk import WalkMixin
from syncworker.errors import ConfigError, CoordError

__all__ = ["Coordinator"]

# A worker that cannot reach Redis should say so within seconds, not hang a task.
CONNECT_TIMEOUT = 5.0
# No command of ours blocks server-side, so any reply slower than this is a dead link.
SOCKET_TIMEOUT = 10.0
# Ride out a Redis restart or failover of a few seconds before giving up with CoordError.
RETRIES = 3
RETRY_BACKOFF = ExponentialBackoff(cap=2.0, base=0.2)
# Ping idle pooled connections before use so that one dropped by a restart is replaced.
HEALTH_CHECK_INTERVAL = 30

_embedded_server: Any = None
_embedded_guard = threading.Lock()


def _embedded_client() -> Any:
    """A client of the process's one in-memory Redis, shared by every embedded Coordinator
    and thread. fakeredis is imported only here: workers on a real Redis never load it."""
    global _embedded_server
    # redis-py's Lock and our scripts are Lua; without lupa fakeredis answers "unknown
    # command evalsha" at the first lock, so say what is missing up front.
    if importlib.util.find_spec("lupa") is None:
        raise CoordError("embedded coordination needs Lua: pip install 'fakeredis[lua]'")
    import fakeredis

    with _embedded_guard:
        if _embedded_server is None:
            _embedded_server = fakeredis.FakeServer()
        return fakeredis.FakeRedis(server=_embedded_server)


class Coordinator(LocksMixin, RunsMixin, WalkMixin):
    """Locks, single-flights, walk cursor, run state and the last-digest cache, in Redis.

    Thread-safe (redis-py's client pools its connections): share one per process.
    """

    def __init__(
        self, client: redis.Redis, prefix: str = "syncworker", *, where: str | None = None
    ) -> None:
        super().__init__(client, prefix, where)
        self._register_runs()
        self._register_walk()

    @classmethod
    def embedded(cls, prefix: str = "syncworker") -> Coordinator:
        """In-process Redis (fakeredis) for ``syncworker sync`` with nothing to start."""
        return cls(_embedded_client(), prefix, where="embedded (in-process fakeredis)")

    @classmethod
    def from_url(cls, url: str, prefix: str = "syncworker") -> Coordinator:
        """Connect to ``redis://``, ``rediss://`` or ``unix://`` (nothing is sent yet)."""
        try:
            client = redis.Redis.from_url(
                url,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                health_check_interval=HEALTH_CHECK_INTERVAL,
                retry=Retry(RETRY_BACKOFF, RETRIES),
            )
        except ValueError as exc:
            raise ConfigError("syncworker.redis", f"bad Redis URL {redact_url(url)}") from exc
        return cls(client, prefix, where=redact_url(url))

    @property
    def client(self) -> redis.Redis:
        """The underlying client, for Celery/RedBeat wiring and tests."""
        return self._client

    @property
    def prefix(self) -> str:
        return self._keys.prefix

    def ping(self) -> None:
        """Raise :class:`CoordError` (naming the redacted URL) unless Redis answers."""
        with redis_errors(self._where):
            self._client.ping()

    def close(self) -> None:
        """Close pooled connections (the Coordinator reconnects if used again)."""
        self._client.close()

    @translated
    def last_digest(self, registry: str, repo: str, tag: str) -> str | None:
        """The digest last synced for ``repo:tag`` (a cache: index.json is the truth)."""
        return text(self._client.get(self._keys.last_digest(registry, repo, tag)))

    @translated
    def set_last_digest(self, registry: str, repo: str, tag: str, digest: str) -> None:
        key = self._keys.last_digest(registry, repo, tag)
        self._client.set(key, digest, ex=int(TAG_CACHE_TTL))

    def __repr__(self) -> str:
        return f"Coordinator({self._where!r}, prefix={self.prefix!r})"
