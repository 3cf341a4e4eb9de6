"""Manifests a pull budget was spent on, kept for a while so they are never paid for twice.

Docker Hub counts every manifest GET, whatever comes of it. A tree whose walk the budget
interrupts (an index fetched, its next child deferred) is walked again when the budget
refills; without what was fetched the first time, the index would be paid for again, and
with a budget smaller than one tree the walk would never end. So every manifest fetched
from an upstream that declares a budget is kept here, by repository and digest, for
:data:`KEEP_WINDOWS` of the budget's windows from its last use (a deferred walk comes
back within one), and a GET by digest is answered from here first. Kept per process
(:class:`LocalPaidManifests`) or, through Redis, for the cluster (``syncworker.coord``'s
``Coordinator.paid_manifests``), since the walk that comes back may run on another worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from syncworker.registry.budget import Budget

__all__ = ["KEEP_WINDOWS", "Kept", "LocalPaidManifests", "PaidFor", "PaidManifests"]

# Windows of the budget a paid-for manifest is kept: a deferred walk is sent again when
# the window refills, so one would do; the second covers a resend that waited its turn.
KEEP_WINDOWS = 2


class Kept(NamedTuple):
    """A manifest's bytes as received, and the media type its answer declared."""

    raw: bytes
    media_type: str | None


class PaidManifests(Protocol):
    """The paid-for manifests of one upstream. Each call is one atomic step. A manifest is
    a plain (bytes, media type) pair here, so that ``syncworker.coord``, below this
    package, can keep them without importing it."""

    def find(self, repo: str, digest: str, seconds: float) -> tuple[bytes, str | None] | None:
        """Manifest ``digest`` of ``repo`` if it was paid for lately, then kept ``seconds``
        from now (0: as long as it was)."""
        ...

    def keep(self, repo: str, digest: str, kept: tuple[bytes, str | None], seconds: float) -> None:
        """Keep manifest ``digest`` of ``repo`` for ``seconds``."""
        ...


@dataclass
class LocalPaidManifests:
    """:class:`PaidManifests` for one process; what expired is dropped as more is kept."""

    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _kept: dict[tuple[str, str], tuple[float, tuple[bytes, str | None]]] = field(
        default_factory=dict
    )

    def find(self, repo: str, digest: str, seconds: float) -> tuple[bytes, str | None] | None:
        with self._lock:
            now = self.clock()
            found = self._kept.get((repo, digest))
            if found is None or found[0] <= now:
                return None
            if seconds:
                self._kept[repo, digest] = (now + seconds, found[1])
            return found[1]

    def keep(self, repo: str, digest: str, kept: tuple[bytes, str | None], seconds: float) -> None:
        with self._lock:
            now = self.clock()
            self._kept = {k: v for k, v in self._kept.items() if v[0] > now}
            self._kept[repo, digest] = (now + seconds, kept)


class PaidFor:
    """What one client's manifest GETs ask of ``memo``: nothing without a budget layer,
    nor once that layer knows the upstream declares no budget."""

    def __init__(self, memo: PaidManifests | None, budget: Budget | None) -> None:
        self._memo = memo
        self._budget = budget

    @property
    def counts_pulls(self) -> bool:
        """Whether a manifest GET may spend a pull (see :attr:`Budget.counts_pulls`)."""
        return self._budget is not None and self._budget.counts_pulls

    def find(self, repo: str, ref: str) -> Kept | None:
        """The manifest ``ref`` (a digest) of ``repo`` if it was paid for lately; kept
        again from now, since a tree that takes many windows needs its root in each."""
        if self._memo is None or ":" not in ref or not self.counts_pulls:
            return None
        found = self._memo.find(repo, ref, self._seconds())
        return None if found is None else Kept(*found)

    def keep(self, repo: str, digest: str, kept: Kept) -> None:
        """A manifest just fetched: kept if its upstream declared a budget."""
        if self._memo is not None and (seconds := self._seconds()):
            self._memo.keep(repo, digest, kept, seconds)

    def _seconds(self) -> float:
        """How long a manifest is kept from its last use: KEEP_WINDOWS of the budget's
        window, 0 while no answer has named one."""
        return KEEP_WINDOWS * self._budget.window if self._budget is not None else 0
