"""A download rate cap per upstream (``downloadRate``): bytes per second of every response
body read from it, blobs and manifests alike, for all its readers together.

Like the request budget of :mod:`.limits`, one :class:`Bandwidth` is shared by every thread
of a process (:class:`LocalBandwidth`) or, through Redis, by every worker of a cluster
(``syncworker.coord``'s ``Coordinator.bandwidth``). The layer (:class:`Throttle`) spends
each chunk after it is read and waits as long as the budget says before the next read, so
the connection's own flow control slows the sender. A redirected blob download (object
storage, a CDN) counts too: the cap protects the line it arrives on.

A virtual clock, not a bucket of tokens: each spend moves the next free instant on by
``size / rate``; after an idle spell at most :data:`BURST` seconds of credit remain, so the
gaps between bodies (a manifest read, a store write) are made up for without a long burst.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from syncworker.registry.deadline import Deadline
from syncworker.registry.http import Handler, Request, Response
from syncworker.registry.stats import ClientStats

__all__ = ["BURST", "Bandwidth", "LocalBandwidth", "Throttle"]

# Seconds of unused rate an idle upstream keeps: enough to make up for the pauses between
# bodies, small against any run the cap matters for.
BURST = 0.5


class Bandwidth(Protocol):
    """One upstream's bytes per second. One atomic step; never blocks."""

    def spend(self, size: int) -> float:
        """``size`` bytes were read: the seconds to wait before reading more (0: none)."""
        ...


class Throttle:
    """The bandwidth layer: each chunk of every body read through it is spent from
    ``bandwidth``, and the reader waits (told to the stats' hook) as long as it says."""

    def __init__(
        self,
        inner: Handler,
        bandwidth: Bandwidth,
        stats: ClientStats,
        sleep: Callable[[float], None],
    ) -> None:
        self._inner = inner
        self._bandwidth = bandwidth
        self._stats = stats
        self._sleep = sleep

    def send(self, request: Request) -> Response:
        response = self._inner.send(request)
        what = response.what
        response.metered(lambda size: self._spend(size, request.deadline, what))
        return response

    def _spend(self, size: int, deadline: Deadline | None, what: str) -> None:
        wait = self._bandwidth.spend(size)
        if wait <= 0:
            return
        if deadline is not None:
            deadline.check_wait(wait, f"{what}: waiting for the download rate cap")
        if self._stats.hook is not None:
            self._stats.hook.waited(wait)
        self._sleep(wait)


@dataclass
class LocalBandwidth:
    """:class:`Bandwidth` for one process: the virtual clock in memory."""

    bytes_per_sec: int
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _next_free: float | None = None

    def spend(self, size: int) -> float:
        with self._lock:
            now = self.clock()
            start = now if self._next_free is None else max(self._next_free, now - BURST)
            self._next_free = start + size / self.bytes_per_sec
            return max(0.0, self._next_free - now)
