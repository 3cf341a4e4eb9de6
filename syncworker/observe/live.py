"""A run's counts while its repositories are in flight: a worker reports each image of a
repository as it ends, into the run's live hash in Redis (``Runs.note_live``).

The task that syncs a repository for a run wraps the sync in :meth:`LiveCounts.track`; the
engine's ``image_done`` events of that repository then add up here and are written at most
once per LIVE_INTERVAL, the first time only LIVE_INTERVAL after the repository started. So a
repository that ends sooner (every repository of a no-op run) writes nothing, and Redis sees
no more commands for it than before. The count of the repository's result then replaces
its live counts in one step (``incr(clear_live=...)``), which :attr:`Tracked.written` says
are there to clear.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from syncworker.engine.events import ImageOutcome, NullEvents
from syncworker.errors import SyncworkerError

__all__ = ["LIVE_INTERVAL", "LiveCounts", "LiveWriter", "Tracked"]

log = logging.getLogger(__name__)

#: Seconds between two writes of one repository's counts: `status --watch` refreshes about
#: as often, and one small write a second is nothing next to the copying it reports.
LIVE_INTERVAL = 1.0
# The live counter each outcome adds to (names of coord's LIVE_COUNTERS).
_COUNTER = {"copied": "images_copied", "unchanged": "images_skipped", "failed": "images_failed"}


class LiveWriter(Protocol):
    """Where live counts go: a Coordinator."""

    def note_live(self, run_id: str, repo: str, counts: dict[str, int]) -> bool: ...


class Tracked:
    """One repository of one run in flight: its counts, written now and then."""

    def __init__(
        self, writer: LiveWriter, run_id: str, repo: str, clock: Callable[[], float]
    ) -> None:
        self._writer, self._run_id, self._repo, self._clock = writer, run_id, repo, clock
        self._counts = {"images_copied": 0, "images_skipped": 0, "images_failed": 0, "bytes": 0}
        self._due = clock() + LIVE_INTERVAL
        self._lock = threading.Lock()
        #: Live counts may be in Redis: the count of the result must clear them.
        self.written = False

    def add(self, outcome: ImageOutcome, size: int) -> None:
        """Count one image (from any tag thread); write if LIVE_INTERVAL has passed."""
        with self._lock:
            self._counts[_COUNTER[outcome]] += 1
            self._counts["bytes"] += size
            now = self._clock()
            if now < self._due:
                return
            self._due = now + LIVE_INTERVAL
            counts = dict(self._counts)
            self.written = True
        self._write(counts)

    def _write(self, counts: dict[str, int]) -> None:
        # Off the copying's critical path: Redis out of reach costs this report, not a tag.
        try:
            self._writer.note_live(self._run_id, self._repo, counts)
        except SyncworkerError as exc:
            log.debug("live counts of %s not written: %s", self._repo, exc)


class LiveCounts(NullEvents):
    """The engine's events, as far as live counts need them: images of tracked
    repositories (the other events are ignored). Thread-safe; one per worker process."""

    def __init__(self, writer: LiveWriter, clock: Callable[[], float] = time.monotonic) -> None:
        self._writer = writer
        self._clock = clock
        self._tracked: dict[tuple[str, str], Tracked] = {}
        self._lock = threading.Lock()

    @contextmanager
    def track(self, registry: str, repo: str, run_id: str | None) -> Iterator[Tracked]:
        """Count the images of ``registry``'s ``repo`` into run ``run_id`` while inside
        (nothing is written without a run)."""
        tracked = Tracked(self._writer, run_id or "", repo, self._clock)
        key = (registry, repo)
        with self._lock:
            mine = run_id is not None and key not in self._tracked
            if mine:
                self._tracked[key] = tracked
        try:
            yield tracked
        finally:
            if mine:
                with self._lock:
                    del self._tracked[key]

    def image_done(self, registry: str, repo: str, outcome: ImageOutcome, size: int) -> None:
        with self._lock:
            tracked = self._tracked.get((registry, repo))
        if tracked is not None:
            tracked.add(outcome, size)
