"""The blob single-flight's waiting side in Redis: who holds a flight, from which upstream,
and whether it is getting anywhere.

The flight itself is a redis-py lock (``{p}:flight:blob:{digest}``). Beside it a hash
(``{p}:progress:blob:{digest}``) maps each holder's token to ``"{bytes} {source}"``: the
holder writes it when it boards and at most every ``LockWaits.progress_every`` while it
streams; and ``"{token}:alive"`` to a count of heartbeats, written as often while it waits
on purpose (:mod:`syncworker.heartbeat`). A waiter reads the current holder's entries
(an expired entry tells nothing: it is no progress) and lets
:class:`~syncworker.waits.FlightWatch` decide: wait, take the flight over
(``lua/flight_take.lua``: only from the holder it saw), or leave for its own upstream's lane
(``{p}:lane:blob:{digest}:{source}``, a flight of its own with entries in the same hash). A
holder that lost its flight keeps writing its own entry, which no waiter reads any more.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import redis
from redis.lock import Lock

from syncworker.coord.keeper import POLL_SECONDS, new_lock
from syncworker.coord.keys import Keys
from syncworker.coord.redisclient import Part, redis_errors, text
from syncworker.coord.scripts import register
from syncworker.errors import CoordError, LockBusy
from syncworker.waits import FlightWatch, LockWaits, Verdict

__all__ = ["FlightBoard", "RedisFlight"]

log = logging.getLogger(__name__)


class RedisFlight:
    """A blob flight's holder in the cluster (the engine's ``BlobFlight``)."""

    __slots__ = (
        "_beats",
        "_client",
        "_every",
        "_key",
        "_last",
        "_last_beat",
        "_record",
        "_token",
        "_ttl",
        "_where",
        "look_again",
    )

    def __init__(
        self,
        client: redis.Redis,
        where: str,
        key: str,
        token: str,
        source: str,
        ttl: float,
        every: float,
    ) -> None:
        self._client, self._where = client, where
        self._key = key
        self._token = token
        self._record = f" {source}"
        self._ttl = ttl
        self._every = every
        self._last = self._last_beat = time.monotonic()
        self._beats = 0
        self.look_again = False

    def progress(self, nbytes: int) -> None:
        now = time.monotonic()
        if now - self._last < self._every:
            return
        self._last = now
        try:
            self.write(nbytes)
        except CoordError as exc:
            # Waiters may then take the flight over: a second fetch, never a wrong one.
            log.debug("could not publish progress of %s: %s", self._key, exc)

    def alive(self) -> None:
        now = time.monotonic()
        if now - self._last_beat < self._every:
            return
        self._last_beat = now
        self._beats += 1
        try:
            self._write(alive_field(self._token), str(self._beats))
        except CoordError as exc:
            log.debug("could not publish the heartbeat of %s: %s", self._key, exc)

    def write(self, nbytes: int) -> None:
        self._write(self._token, f"{nbytes}{self._record}")

    def _write(self, field: str, value: str) -> None:
        with redis_errors(self._where), self._client.pipeline(transaction=False) as pipe:
            pipe.hset(self._key, field, value)
            pipe.pexpire(self._key, int(self._ttl * 1000))
            pipe.execute()


def alive_field(token: str) -> str:
    """The progress hash's field of the heartbeats of the holder ``token``."""
    return f"{token}:alive"


class FlightBoard(Part):
    """Boards blob flights: holds one, or waits on its holder as the waits say."""

    def __init__(self, client: redis.Redis, keys: Keys, where: str, waits: LockWaits) -> None:
        super().__init__(client, keys, where)
        self._waits = waits
        self._take = register(client, "flight_take")

    def board(
        self,
        key: str,
        digest: str,
        source: str,
        ttl: float,
        wait: float,
        given_up: Callable[[], bool] | None,
    ) -> tuple[Lock, RedisFlight] | None:
        """Hold ``key`` (the flight of ``digest`` or a lane of it); None when its holder
        fetches from another upstream and has kept us ``LockWaits.foreign``.
        :class:`LockBusy` after ``wait`` seconds, or once ``given_up()`` says so."""
        deadline = time.monotonic() + wait
        watch = FlightWatch(key, source, self._waits)
        waited = False
        progress_key = self._keys.blob_progress(digest)
        while True:
            token = uuid.uuid4().hex
            lock = new_lock(self._client, key, ttl)
            with redis_errors(self._where):
                if lock.acquire(blocking=False, token=token):
                    return lock, self._boarded(progress_key, token, source, ttl, waited)
                holder = text(self._client.get(key))
                if holder is None:
                    continue  # it left between our two questions: ask again
                record, beats = self._client.hmget(progress_key, holder, alive_field(holder))
            if not waited:
                log.debug("waiting for blob %s, held by another worker", key)
                waited = True
            progress, seen = _progress(text(record))
            alive = None if beats is None else int(beats)
            verdict = watch.see(holder, seen, progress, alive, time.monotonic())
            if verdict is Verdict.OWN_UPSTREAM:
                return None
            if verdict is Verdict.TAKE_OVER and self._take_over(key, holder, token, ttl, lock):
                return lock, self._boarded(progress_key, token, source, ttl, waited)
            if time.monotonic() + POLL_SECONDS > deadline or (given_up and given_up()):
                raise LockBusy(key, wait)
            time.sleep(POLL_SECONDS)

    def _boarded(
        self, progress_key: str, token: str, source: str, ttl: float, waited: bool
    ) -> RedisFlight:
        every = self._waits.progress_every
        flight = RedisFlight(self._client, self._where, progress_key, token, source, ttl, every)
        flight.write(0)
        flight.look_again = waited
        return flight

    def _take_over(self, key: str, holder: str, token: str, ttl: float, lock: Lock) -> bool:
        """Replace ``holder`` by us, unless someone else already did; ``lock`` then owns it."""
        with redis_errors(self._where):
            taken = self._take(keys=[key], args=[holder, token, int(ttl * 1000)])
        if not taken:
            return False
        # What redis-py's Lock.acquire would have recorded: the token it re-arms and releases.
        lock.local.token = lock.redis.connection_pool.get_encoder().encode(token)
        return True


def _progress(record: str | None) -> tuple[int | None, str | None]:
    """A holder's byte count and upstream, from its entry; None for each not known."""
    if record is None:
        return None, None
    count, _, source = record.partition(" ")
    return int(count), source or None
