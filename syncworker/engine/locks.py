"""What the engine needs of coordination, and its in-process implementation.

:class:`Locks` is the whole contract: a lock per destination repository, a single-flight per
blob digest, a single-flight per on-demand image. :class:`LocalLocks` implements it with
``threading`` primitives for one process (``syncworker sync``); ``syncworker.coord``'s
``Coordinator`` implements it in Redis for a cluster. ``tests/test_coord_locks.py`` runs
one contract suite against both.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from syncworker.errors import LockBusy

__all__ = ["LocalLocks", "Locks"]

log = logging.getLogger(__name__)

# How many finished blob flights LocalLocks remembers. A copy looks at the store, then asks
# for the flight; a flight that finished in between is among the last few, never 4096 back.
RECENT_FLIGHTS = 4096


class Locks(Protocol):
    """Mutual exclusion and single-flights, per process or per cluster.

    ``blocking_timeout`` is how long to wait for another holder before :class:`LockBusy`
    (``None``: as long as it takes; ``0``: try once).
    """

    def repo_lock(
        self, dest_repo: str, *, blocking_timeout: float | None = ...
    ) -> AbstractContextManager[None]:
        """Hold the destination repository: one writer of its ``index.json`` at a time."""
        ...

    def blob_flight(
        self, digest: str, *, blocking_timeout: float | None = ...
    ) -> AbstractContextManager[bool]:
        """One holder per blob digest. Yields True when another holder may have put the blob
        in the store since the caller last looked (it waited for one, or one finished
        recently): the holder then looks again, so a blob wanted by several copies at once
        is fetched by the first and linked by the others. False: nobody else has it, fetch."""
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


class LocalLocks:
    """:class:`Locks` for one process: a ``threading.Lock`` per key, made on first use and
    dropped when its last user leaves, so the map never outgrows what is in flight."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._finished_blobs: OrderedDict[str, None] = OrderedDict()

    @contextmanager
    def repo_lock(self, dest_repo: str, *, blocking_timeout: float | None = None) -> Iterator[None]:
        with self._entry(("repo", dest_repo)) as entry, _held(entry, dest_repo, blocking_timeout):
            yield

    @contextmanager
    def blob_flight(self, digest: str, *, blocking_timeout: float | None = None) -> Iterator[bool]:
        key = ("blob", digest)
        with self._entry(key) as entry, _held(entry, digest, blocking_timeout) as waited:
            yield waited or self._finished_recently(digest)
            self._note_finished(digest)

    def _finished_recently(self, digest: str) -> bool:
        with self._guard:
            return digest in self._finished_blobs

    def _note_finished(self, digest: str) -> None:
        with self._guard:
            self._finished_blobs[digest] = None
            self._finished_blobs.move_to_end(digest)
            if len(self._finished_blobs) > RECENT_FLIGHTS:
                self._finished_blobs.popitem(last=False)

    @contextmanager
    def image_flight(
        self, registry: str, repo: str, reference: str, *, blocking_timeout: float | None = None
    ) -> Iterator[bool]:
        name = f"{registry}/{repo}:{reference}"
        with self._entry(("image", registry, repo, reference)) as entry:
            with self._guard:
                arrived_after = entry.started
            with _held(entry, name, blocking_timeout):
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
