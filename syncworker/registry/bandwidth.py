"""A download rate cap per upstream (``downloadRate``): bytes per second of every response
body read from it, blobs and manifests alike, for all its readers together.

Like the request budget of :mod:`.limits`, one :class:`Bandwidth` is shared by every thread
of a process (:class:`LocalBandwidth`) or, through Redis, by every worker of a cluster
(``syncworker.coord``'s ``Coordinator.bandwidth``). The layer (:class:`Throttle`) spends
each chunk after it is read and waits as long as the budget says before the next read, so
the connection's own flow control slows the sender. A redirected blob download (object
storage, a CDN) counts too: the cap protects the line it arrives on. What the cap held a
body back is said once, when the body is closed (never a line per chunk), and counted in
the hook's :meth:`~.stats.RequestHook.capped` (the ``kind="bandwidth"`` wait metric).

A virtual clock, not a bucket of tokens: each spend moves the next free instant on by
``size / rate``; after an idle spell at most :data:`BURST` seconds of credit remain, so the
gaps between bodies (a manifest read, a store write) are made up for without a long burst.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from syncworker.registry.deadline import Deadline
from syncworker.registry.http import Handler, Request, Response
from syncworker.registry.requestlog import log
from syncworker.registry.stats import ClientStats

__all__ = ["BURST", "NOTICEABLE", "Bandwidth", "LocalBandwidth", "Throttle"]

# Seconds of unused rate an idle upstream keeps: enough to make up for the pauses between
# bodies, small against any run the cap matters for.
BURST = 0.5
# Seconds of waiting for the cap, over one body, that are worth an INFO line (``-v``); a
# shorter hold is a DEBUG line (``-vv``), like the other decisions about a request.
NOTICEABLE = 1.0


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
        held = _Held(response)
        response.metered(lambda size: self._spend(size, request.deadline, held))
        response.on_close(held.report)
        return response

    def _spend(self, size: int, deadline: Deadline | None, held: _Held) -> None:
        wait = self._bandwidth.spend(size)
        if wait <= 0:
            return
        if deadline is not None:
            deadline.check_wait(wait, f"{held.response.what}: waiting for the download rate cap")
        if self._stats.hook is not None:
            self._stats.hook.capped(wait)
        held.seconds += wait
        self._sleep(wait)


@dataclass(slots=True)
class _Held:
    """How long the cap held one body back; added to by one thread, the body's reader."""

    response: Response
    seconds: float = 0.0

    def report(self) -> None:
        if self.seconds <= 0:
            return
        level = logging.INFO if self.seconds >= NOTICEABLE else logging.DEBUG
        log.log(
            level,
            "%s: the download rate cap held it back %.1f s (%d bytes read)",
            self.response.what,
            self.seconds,
            self.response.received,
        )


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
