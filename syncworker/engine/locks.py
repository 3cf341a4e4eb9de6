"""What the engine needs of coordination, and its in-process implementation.

:class:`Locks` is the whole contract: a lock per destination repository, a single-flight per
blob digest, a single-flight per on-demand image, each waiting as ``syncworker/waits.py``
says. :class:`LocalLocks` implements it with ``threading`` primitives for one process
(``syncworker sync``); ``syncworker.coord``'s ``Coordinator`` implements it in Redis for a
cluster. ``tests/test_coord_locks.py`` runs one contract suite against both.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from syncworker.errors import LockBusy
from syncworker.waits import FlightWatch, LockWaits, Verdict

__all__ = ["HELD", "BlobFlight", "LocalLocks", "Locks", "RepoHold"]

log = logging.getLogger(__name__)

# How often a blob flight waiter looks at its holder's progress when nothing wakes it.
WATCH_SECONDS = 0.2


class BlobFlight(Protocol):
    """What a blob flight's holder gets."""

    #: Another holder may have put the blob in the store since the caller last looked (the
    #: caller waited for one, or one finished within ``LockWaits.recent``): look again.
    look_again: bool

    def progress(self, nbytes: int) -> None:
        """The holder has ``nbytes`` of the blob so far: waiters see it making progress."""
        ...

    def alive(self) -> None:
        """The holder is alive, waiting on purpose (:mod:`syncworker.heartbeat`): waiters
        see it alive though no byte moves."""
        ...


class RepoHold(Protocol):
    """What a repository lock's holder gets."""

    def ensure(self) -> None:
        """Raise :class:`~syncworker.errors.LockLost` if the lock is no longer this
        holder's (it expired under it): called before each removal, so a holder that lost
        its lock removes nothing more."""
        ...


class _Held:
    """A hold that cannot be lost: a lock of this process, held until released."""

    def ensure(self) -> None:
        return None


HELD: RepoHold = _Held()


class Locks(Protocol):
    """Mutual exclusion and single-flights, per process or per cluster.

    ``blocking_timeout`` is how long to wait for another holder before :class:`LockBusy`
    (``0``: try once). ``None``: for a repository lock as long as it takes; for a flight
    ``LockWaits.flight`` (``syncworker/waits.py``, the same in every implementation). A
    flight's waiter also stops with :class:`LockBusy` once ``given_up()`` says so (its job
    ended), at its next look at the holder.
    """

    #: The waits this implementation keeps.
    waits: LockWaits

    def repo_lock(
        self, dest_repo: str, *, blocking_timeout: float | None = ...
    ) -> AbstractContextManager[RepoHold]:
        """Hold the destination repository: one writer of its ``index.json`` at a time."""
        ...

    def blob_flight(
        self,
        digest: str,
        *,
        source: str,
        blocking_timeout: float | None = ...,
        given_up: Callable[[], bool] | None = ...,
    ) -> AbstractContextManager[BlobFlight]:
        """One fetch per blob digest: a blob wanted by several copies at once is fetched by
        the first holder and linked by the others (see :attr:`BlobFlight.look_again`).
        ``source`` names the upstream the caller would fetch from. A waiter whose holder's
        progress stands still for ``LockWaits.stall`` takes the flight over; one whose
        holder fetches from another upstream stops waiting after ``LockWaits.foreign`` and
        holds a flight of its own upstream's instead (one fetch per upstream)."""
        ...

    def image_flight(
        self, registry: str, repo: str, reference: str, *, blocking_timeout: float | None = ...
    ) -> AbstractContextManager[bool]:
        """Coalesce identical on-demand requests: True for the one that copies, False for
        the others once it has finished. A request is coalesced only into a copy that began
        after the request arrived: one already running may have read the tag before a newer
        push. If the copier fails, a waiter takes over (True)."""
        ...


@dataclass(slots=True)
class _Entry:
    """One key's lock and how many callers hold or wait on it. For an image flight also how
    many copies began and the number of the last one that succeeded: a waiter compares that
    with the count it saw on arrival, to know whether a copy began after it arrived."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
    started: int = 0
    last_ok: int = 0


@dataclass(slots=True, eq=False)
class _Flight:
    """A blob flight's holder in this process (:class:`BlobFlight`)."""

    source: str
    look_again: bool = False
    bytes: int = 0
    beats: int = 0

    def progress(self, nbytes: int) -> None:
        self.bytes = nbytes

    def alive(self) -> None:
        self.beats += 1


class LocalLocks:
    """:class:`Locks` for one process: a ``threading.Lock`` per key, made on first use and
    dropped when its last user leaves, so the map never outgrows what is in flight. Blob
    flights are a map of holders under one condition, which a holder leaving notifies."""

    def __init__(self, waits: LockWaits = LockWaits()) -> None:  # noqa: B008 - frozen
        self.waits = waits
        self._guard = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._flights: dict[str, _Flight] = {}
        self._flight_left = threading.Condition(self._guard)
        # digest -> when its last flight finished, oldest first; none older than waits.recent.
        self._finished_blobs: OrderedDict[str, float] = OrderedDict()

    @contextmanager
    def repo_lock(
        self, dest_repo: str, *, blocking_timeout: float | None = None
    ) -> Iterator[RepoHold]:
        with self._entry(("repo", dest_repo)) as entry, _held(entry, dest_repo, blocking_timeout):
            yield HELD

    @contextmanager
    def blob_flight(
        self,
        digest: str,
        *,
        source: str,
        blocking_timeout: float | None = None,
        given_up: Callable[[], bool] | None = None,
    ) -> Iterator[BlobFlight]:
        wait = self.waits.flight if blocking_timeout is None else blocking_timeout
        deadline = time.monotonic() + wait
        key, flight = digest, self._board(digest, source, deadline, wait, given_up)
        if flight is None:
            # A holder fetching from another upstream kept us waiting: one fetch per upstream.
            key = f"{digest} from {source}"
            flight = self._board(key, source, deadline, wait, given_up)
        if flight is None:  # never: this flight's holders all fetch from ``source``
            raise LockBusy(key, wait)
        try:
            flight.look_again = flight.look_again or self._finished_recently(digest)
            yield flight
            self._note_finished(digest)
        finally:
            with self._flight_left:
                if self._flights.get(key) is flight:
                    del self._flights[key]
                self._flight_left.notify_all()

    def _board(
        self,
        key: str,
        source: str,
        deadline: float,
        wait: float,
        given_up: Callable[[], bool] | None,
    ) -> _Flight | None:
        """Become ``key``'s holder, waiting as a :class:`FlightWatch` says, until
        ``deadline`` (the end of ``wait``) or ``given_up()``; None when the holder fetches
        from another upstream and has kept us too long."""
        watch = FlightWatch(key, source, self.waits)
        waited = False
        with self._flight_left:
            while (holder := self._flights.get(key)) is not None:
                if not waited:
                    log.debug("waiting for blob %s, held by another thread", key)
                    waited = True
                now = time.monotonic()
                verdict = watch.see(holder, holder.source, holder.bytes, holder.beats, now)
                if verdict is Verdict.OWN_UPSTREAM:
                    return None
                if verdict is Verdict.TAKE_OVER:
                    break
                if now >= deadline or (given_up is not None and given_up()):
                    raise LockBusy(key, wait)
                self._flight_left.wait(min(WATCH_SECONDS, deadline - now))
            flight = self._flights[key] = _Flight(source, look_again=waited)
        return flight

    def _finished_recently(self, digest: str) -> bool:
        with self._guard:
            return digest in self._finished_blobs

    def _note_finished(self, digest: str) -> None:
        now = time.monotonic()
        with self._guard:
            self._finished_blobs[digest] = now
            self._finished_blobs.move_to_end(digest)
            while next(iter(self._finished_blobs.values())) < now - self.waits.recent:
                self._finished_blobs.popitem(last=False)

    @contextmanager
    def image_flight(
        self, registry: str, repo: str, reference: str, *, blocking_timeout: float | None = None
    ) -> Iterator[bool]:
        name = f"{registry}/{repo}:{reference}"
        with self._entry(("image", registry, repo, reference)) as entry:
            with self._guard:
                arrived_after = entry.started
            wait = self.waits.flight if blocking_timeout is None else blocking_timeout
            with _held(entry, name, wait):
                if entry.last_ok <= arrived_after:
                    with self._guard:
                        entry.started += 1
                        number = entry.started
                    yield True
                    entry.last_ok = number
                    return
            # A copy that began after this request arrived has finished it.
            yield False

    @contextmanager
    def _entry(self, key: Hashable) -> Iterator[_Entry]:
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            entry.users += 1
        try:
            yield entry
        finally:
            with self._guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._entries[key]


@contextmanager
def _held(entry: _Entry, name: str, blocking_timeout: float | None) -> Iterator[bool]:
    """Hold ``entry``'s lock; yields whether another holder had it first."""
    waited = not entry.lock.acquire(blocking=False)
    if waited:
        log.debug("waiting for %s, held by another thread", name)
        timeout = -1 if blocking_timeout is None else max(0.0, blocking_timeout)
        if not entry.lock.acquire(timeout=timeout):
            raise LockBusy(name, blocking_timeout)
    try:
        yield waited
    finally:
        entry.lock.release()
