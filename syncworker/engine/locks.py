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
from collections.abc import Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from syncworker.errors import LockBusy

__all__ = ["LocalLocks", "Locks"]

log = logging.getLogger(__name__)


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
    ) -> AbstractContextManager[None]:
        """One holder per blob digest. The holder re-checks the store inside, so a blob
        wanted by several copies at once is fetched by the first and linked by the others."""
        ...

    def image_flight(
        self, registry: str, repo: str, reference: str, *, blocking_timeout: float | None = ...
    ) -> AbstractContextManager[bool]:
        """Coalesce identical on-demand requests: True for the one that copies, False for
        the others once it has finished. If the copier fails, a waiter takes over (True)."""
        ...


@dataclass(slots=True)
class _Entry:
    """One key's lock, how many callers hold or wait on it, and how many copies through it
    finished (an image flight's waiters compare it to know the copy they waited for)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
    finished: int = 0


class LocalLocks:
    """:class:`Locks` for one process: a ``threading.Lock`` per key, made on first use and
    dropped when its last user leaves, so the map never outgrows what is in flight."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}

    @contextmanager
    def repo_lock(self, dest_repo: str, *, blocking_timeout: float | None = None) -> Iterator[None]:
        with self._entry(("repo", dest_repo)) as entry, _held(entry, dest_repo, blocking_timeout):
            yield

    @contextmanager
    def blob_flight(self, digest: str, *, blocking_timeout: float | None = None) -> Iterator[None]:
        with self._entry(("blob", digest)) as entry, _held(entry, digest, blocking_timeout):
            yield

    @contextmanager
    def image_flight(
        self, registry: str, repo: str, reference: str, *, blocking_timeout: float | None = None
    ) -> Iterator[bool]:
        name = f"{registry}/{repo}:{reference}"
        with self._entry(("image", registry, repo, reference)) as entry:
            seen = entry.finished
            with _held(entry, name, blocking_timeout):
                if entry.finished == seen:
                    yield True
                    entry.finished += 1
                    return
            # A copy that held the flight while this request waited has finished it.
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
def _held(entry: _Entry, name: str, blocking_timeout: float | None) -> Iterator[None]:
    if not entry.lock.acquire(blocking=False):
        log.debug("waiting for %s, held by another thread", name)
        timeout = -1 if blocking_timeout is None else max(0.0, blocking_timeout)
        if not entry.lock.acquire(timeout=timeout):
            raise LockBusy(name, blocking_timeout)
    try:
        yield
    finally:
        entry.lock.release()
