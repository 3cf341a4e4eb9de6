"""Distributed locks on redis-py's :class:`redis.lock.Lock`, kept alive while held.

This is the engine's ``Locks`` protocol for a cluster. A lock has a TTL so that a worker
killed with SIGKILL does not hold it forever; the Coordinator's :class:`Keeper` re-arms it
while the holder works. If the lock is lost anyway (Redis restarted, the process was cut
off from it or paused past the TTL), a repository lock's holder is told before each removal
and each ``index.json`` write (:meth:`RepoHold.ensure` raises LockLost: gc and prune stop,
a sync lists nothing more, since a gc or another sync may now hold the repository), and
exiting the block logs a warning instead of raising: what was copied is content-addressed
and listed nowhere, and the next holder re-checks the store before writing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockNotOwnedError, RedisError
from redis.lock import Lock

from syncworker.coord.blobflight import FlightBoard, RedisFlight
from syncworker.coord.keeper import POLL_SECONDS, Held, Keeper, new_lock
from syncworker.coord.keys import Keys
from syncworker.coord.redisclient import Part, redis_errors, text
from syncworker.errors import LockBusy, LockLost
from syncworker.waits import LockWaits

__all__ = ["RedisLocks", "RepoHold"]

log = logging.getLogger(__name__)


def _release(lock: Lock, lost: bool) -> None:
    """Release, never raising: the work under the lock is done, and the TTL frees it anyway."""
    if lost:
        return
    try:
        lock.release()
    except LockNotOwnedError:
        log.warning("lock %s was no longer held at release (it expired)", lock.name)
    except RedisError as exc:
        log.warning("could not release lock %s (it expires by its TTL): %s", lock.name, exc)


class RepoHold:
    """A repository lock in Redis as its holder sees it (the engine's ``RepoHold``)."""

    def __init__(self, lock: Lock, held: Held, where: str) -> None:
        self._lock, self._held, self._where = lock, held, where

    def ensure(self) -> None:
        """LockLost unless the lock still holds this holder's token: what the keeper
        found at its last renewal, then one GET (the TTL may have run out since)."""
        if not self._held.lost:
            with redis_errors(self._where):
                owned = self._lock.owned()
            if owned:
                return
        raise LockLost(str(self._lock.name))


class RedisLocks(Part):
    """Repository locks and the blob / image single-flights, waiting as ``waits`` says;
    ``ttl``: how long a lock outlives its holder's last renewal."""

    def __init__(
        self, client: redis.Redis, keys: Keys, where: str, waits: LockWaits, ttl: float
    ) -> None:
        super().__init__(client, keys, where)
        self.waits = waits
        self.ttl = ttl
        self.keeper = Keeper()
        self._board = FlightBoard(client, keys, where, waits)

    @contextmanager
    def repo_lock(
        self, dest_repo: str, *, ttl: float | None = None, blocking_timeout: float | None = None
    ) -> Iterator[RepoHold]:
        """Hold the destination repository's lock; :class:`LockBusy` after ``blocking_timeout``.

        ``blocking_timeout=None`` waits as long as it takes; ``0`` tries once.
        """
        key = self._keys.repo_lock(dest_repo)
        with self._hold(key, self.ttl if ttl is None else ttl, blocking_timeout) as hold:
            yield hold

    @contextmanager
    def blob_flight(
        self,
        digest: str,
        *,
        source: str,
        ttl: float | None = None,
        blocking_timeout: float | None = None,
        given_up: Callable[[], bool] | None = None,
    ) -> Iterator[RedisFlight]:
        """One fetch per blob digest in the cluster (the engine's ``Locks.blob_flight``):
        the holder's flight says to look in the store again when it waited for another
        holder or one finished within ``LockWaits.recent``."""
        ttl = self.ttl if ttl is None else ttl
        wait = self.waits.flight if blocking_timeout is None else blocking_timeout
        deadline = time.monotonic() + wait
        key = self._keys.blob_flight(digest)
        boarded = self._board.board(key, digest, source, ttl, wait, given_up)
        if boarded is None:
            # A holder fetching from another upstream kept us waiting: one fetch per upstream.
            lane = self._keys.blob_lane(digest, source)
            left = max(0.0, deadline - time.monotonic())
            boarded = self._board.board(lane, digest, source, ttl, left, given_up)
        if boarded is None:  # never: that flight's holders all fetch from ``source``
            raise LockBusy(key, wait)
        lock, flight = boarded
        with self._kept(lock, ttl):
            with redis_errors(self._where):
                finished = self._client.exists(self._keys.flight_ok(key)) > 0
            flight.look_again = flight.look_again or finished
            yield flight
            # Blob flights ask only whether one finished, not when it began.
            self._mark_flight_done(key, 0)

    @contextmanager
    def image_flight(
        self,
        registry: str,
        repo: str,
        reference: str,
        *,
        ttl: float | None = None,
        blocking_timeout: float | None = None,
    ) -> Iterator[bool]:
        """Coalesce identical on-demand requests: True for the one that copies, False for the
        others once it has finished. A request is coalesced only into a copy that began after
        it arrived (one already running may have read the tag before a newer push), so those
        arriving during a copy share the next one. If the copier fails or dies, a waiter
        takes over."""
        key = self._keys.image_flight(registry, repo, reference)
        ttl = self.ttl if ttl is None else ttl
        wait = self.waits.flight if blocking_timeout is None else blocking_timeout
        deadline = time.monotonic() + wait
        arrived = self._now()
        while True:
            lock = new_lock(self._client, key, ttl)
            with redis_errors(self._where):
                acquired = lock.acquire(blocking=False, token=uuid.uuid4().hex)
                holder = None if acquired else text(self._client.get(key))
            if acquired:
                with self._kept(lock, ttl):
                    # A copy that began after we arrived may have ended since we last looked.
                    if not self._done_since(key, arrived):
                        began = self._now()
                        yield True
                        self._mark_flight_done(key, began)
                        return
                yield False
                return
            if holder is not None and self._wait_for_flight(key, holder, arrived, deadline, wait):
                yield False
                return
            # The holder left having failed, or began before we arrived: copy ourselves.

    @contextmanager
    def _hold(self, key: str, ttl: float, blocking_timeout: float | None) -> Iterator[RepoHold]:
        lock = new_lock(self._client, key, ttl, blocking_timeout)
        with redis_errors(self._where):
            acquired = lock.acquire()
        if not acquired:
            raise LockBusy(key, blocking_timeout)
        with self._kept(lock, ttl) as held:
            yield RepoHold(lock, held, self._where)

    @contextmanager
    def _kept(self, lock: Lock, ttl: float) -> Iterator[Held]:
        """Keep an acquired lock alive for the duration of the block, then release it."""
        held = None
        try:
            with self.keeper.keep(lock, ttl) as held:
                yield held
        finally:
            _release(lock, held is not None and held.lost)

    def _wait_for_flight(
        self, key: str, holder: str, arrived: int, deadline: float, waited: float
    ) -> bool:
        """Wait while ``holder`` owns the flight; True if, once it left, the last successful
        copy is one that began after ``arrived``."""
        log.debug("waiting for %s, held by another worker", key)
        while True:
            with redis_errors(self._where):
                current = text(self._client.get(key))
                if current != holder:
                    return self._done_since(key, arrived)
            if time.monotonic() + POLL_SECONDS > deadline:
                raise LockBusy(key, waited)
            time.sleep(POLL_SECONDS)

    def _done_since(self, key: str, arrived: int) -> bool:
        """Whether the last successful copy of this flight began after ``arrived``."""
        with redis_errors(self._where):
            done = text(self._client.get(self._keys.flight_ok(key)))
        return done is not None and int(done) > arrived

    def _now(self) -> int:
        """Redis's clock in microseconds: the one clock every worker's flight is compared on."""
        with redis_errors(self._where):
            seconds, micros = self._client.time()
        return int(seconds) * 1_000_000 + int(micros)

    def _mark_flight_done(self, key: str, began: int) -> None:
        """Tell the waiters when the copy that succeeded began (before the lock is released)."""
        try:
            self._client.set(self._keys.flight_ok(key), str(began), ex=int(self.waits.recent))
        except RedisError as exc:
            # Waiters then take over and find everything in place: slower, still correct.
            log.warning("could not mark flight %s done: %s", key, exc)
