"""Per-upstream rate budgets shared by the cluster (the registry client's ``Limiter``).

One Lua call per acquisition (``lua/limit_acquire.lua``): the pause, the next free turn of
the token bucket and the leases of requests in flight are read and taken in one atomic
step, on Redis's clock. A release is one ``ZREM``, made only when a concurrency limit is
set; a pause is one more Lua call, made only on a ``429``. A download rate cap is one Lua
call per chunk read (``lua/bandwidth_spend.lua``), made only for an upstream that has one.
"""

from __future__ import annotations

import math

import redis

from syncworker.coord.keys import Keys
from syncworker.coord.redisclient import LuaArg, Part, translated
from syncworker.coord.scripts import register

__all__ = ["BURST", "SLOT_LEASE", "RedisBandwidth", "RedisLimiter", "RedisLimits"]

# A request's slot is freed by its release, or by this lease ending if its worker died
# mid-request. A blob streamed for longer than this lets one more request in.
SLOT_LEASE = 600.0
# Seconds of unused download rate an idle upstream keeps; the same as the client's
# in-process cap (``registry.bandwidth.BURST``, which coord may not import).
BURST = 0.5


class RedisLimits(Part):
    """Makes the limiter of each upstream; the scripts are registered once."""

    def __init__(self, client: redis.Redis, keys: Keys, where: str) -> None:
        super().__init__(client, keys, where)
        self._scripts = (register(client, "limit_acquire"), register(client, "limit_pause"))
        self._spend = register(client, "bandwidth_spend")

    def limiter(
        self, registry: str, req_per_sec: float | None, max_concurrent: int | None
    ) -> RedisLimiter:
        return RedisLimiter(self, registry, req_per_sec, max_concurrent)

    def bandwidth(self, registry: str, bytes_per_sec: int) -> RedisBandwidth:
        return RedisBandwidth(self, registry, bytes_per_sec)


class RedisLimiter(Part):
    """The budget of upstream ``registry``, shared with every worker on the same Redis."""

    def __init__(
        self,
        limits: RedisLimits,
        registry: str,
        req_per_sec: float | None,
        max_concurrent: int | None,
    ) -> None:
        super().__init__(limits._client, limits._keys, limits._where)
        self._acquire, self._pause = limits._scripts
        k = self._keys
        self._names = [k.limit_pause(registry), k.limit_next(registry), k.limit_slots(registry)]
        self._interval_ms = 1000.0 / req_per_sec if req_per_sec else 0.0
        self._max_concurrent = max_concurrent or 0

    def __repr__(self) -> str:
        return f"RedisLimiter({self._names[0]!r})"

    @translated
    def acquire(self, token: str) -> float:
        args: list[LuaArg] = [
            self._interval_ms,
            self._max_concurrent,
            token,
            int(SLOT_LEASE * 1000),
        ]
        # -1 (every slot taken) stays negative: the waiting loop polls.
        return int(self._acquire(keys=self._names, args=args)) / 1000.0

    @translated
    def release(self, token: str) -> None:
        if self._max_concurrent:
            self._client.zrem(self._names[2], token)

    @translated
    def pause(self, seconds: float) -> None:
        if math.isfinite(seconds) and seconds > 0:
            self._pause(keys=self._names[:1], args=[math.ceil(seconds * 1000)])


class RedisBandwidth(Part):
    """The download rate cap of upstream ``registry``, shared with every worker on the
    same Redis."""

    def __init__(self, limits: RedisLimits, registry: str, bytes_per_sec: int) -> None:
        super().__init__(limits._client, limits._keys, limits._where)
        self._script = limits._spend
        self._names = [self._keys.limit_bytes(registry)]
        self._bytes_per_sec = bytes_per_sec

    def __repr__(self) -> str:
        return f"RedisBandwidth({self._names[0]!r})"

    @translated
    def spend(self, size: int) -> float:
        args: list[LuaArg] = [size, self._bytes_per_sec, int(BURST * 1000)]
        return int(self._script(keys=self._names, args=args)) / 1000.0
