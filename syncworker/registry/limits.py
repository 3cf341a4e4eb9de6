"""One rate budget per upstream: requests per second, requests in flight, and pauses.

zot's ``reqPerSec`` and our ``maxConcurrentRequests`` hold for every request sent to one
upstream's own URLs, whoever sends it: a :class:`Limiter` is shared by every thread of a
process (``LocalLimiters`` in :mod:`.gates`) or, through Redis, by every worker of a
cluster (``syncworker.coord``'s ``Coordinator.limiter``). A ``429`` (or a ``503`` with
``Retry-After``) seen by one sender pauses the upstream for all of them.

The protocol lives here, below the engine, because the client's rate layer
(:class:`RateLimit`) is what asks it before each request; the engine only picks which
implementation a client gets. Each
implementation answers in one atomic step (one Lua call in Redis); the waiting loop is
:func:`take_turn`, the same for both. An upstream with no limit configured gets no
limiter at all, so its requests pay nothing.

Requests to a redirect target (blob storage, a CDN) or to a token realm are not counted:
they are not the upstream's own traffic, and its rate limiter does not see them.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from syncworker.registry.addresses import Origins
from syncworker.registry.deadline import Deadline
from syncworker.registry.http import Handler, Request, Response
from syncworker.registry.requestlog import log
from syncworker.registry.stats import ClientStats
from syncworker.retry import MAX_RETRY_DELAY

__all__ = [
    "DEFAULT_PAUSE",
    "LocalLimiter",
    "Limiter",
    "RateLimit",
    "SLOT_POLL",
    "new_token",
    "take_turn",
]

# A 429 without Retry-After still means "slow down": everyone waits this long.
DEFAULT_PAUSE = 1.0
# How often a sender waiting for a free concurrency slot asks again: slots free up when a
# request ends, which no one announces, so waiters poll.
SLOT_POLL = 0.05


def new_token() -> str:
    """A name for one request's turn, unique in the cluster (a forked pool child shares
    its parent's counters and thread idents, so nothing derived from them would do)."""
    return uuid.uuid4().hex


class Limiter(Protocol):
    """One upstream's budget. Every method is one atomic step; none blocks."""

    def acquire(self, token: str) -> float:
        """Take a turn for the request named ``token``: 0 when taken, else the seconds to
        wait before asking again (a pause, an empty bucket), or a negative number when
        every concurrency slot is taken (the caller polls: slots free up unannounced)."""
        ...

    def release(self, token: str) -> None:
        """The request named ``token`` has ended (its body read or dropped)."""
        ...

    def pause(self, seconds: float) -> None:
        """No turn for anyone during the next ``seconds`` (a pause never shortens one)."""
        ...


class RateLimit:
    """The rate layer: a request to the upstream's own URLs waits for a turn of its budget
    (``limiter``), which it holds until its response is closed (a streamed blob holds its
    slot while it streams); a ``429`` (or a ``503`` naming a ``Retry-After``) from the
    upstream itself pauses it for every sender sharing the budget. Each wait is told to
    the stats' hook."""

    def __init__(
        self,
        inner: Handler,
        limiter: Limiter,
        origins: Origins,
        stats: ClientStats,
        sleep: Callable[[float], None],
    ) -> None:
        self._inner = inner
        self._limiter = limiter
        self._origins = origins
        self._stats = stats
        self._sleep = sleep

    def send(self, request: Request) -> Response:
        if not self._origins.own(request.url):
            return self._inner.send(request)
        token = new_token()
        take_turn(
            self._limiter,
            token,
            sleep=lambda seconds: self._wait(seconds, request),
            deadline=request.deadline,
            what=request.what,
        )
        try:
            response = self._inner.send(request)
        except BaseException:
            self._limiter.release(token)
            raise
        # Every path above closes what it opened (``with``).
        response.on_close(lambda: self._limiter.release(token))
        status = response.status
        if status == 429 or (status == 503 and response.retry_after is not None):
            # The retry above waits out the same Retry-After: the pause costs it nothing.
            seconds = DEFAULT_PAUSE if response.retry_after is None else response.retry_after
            seconds = min(seconds, MAX_RETRY_DELAY)
            log.debug("%s: %d, pausing this upstream for %.2f s", request.what, status, seconds)
            self._limiter.pause(seconds)
        return response

    def _wait(self, seconds: float, request: Request) -> None:
        log.debug("%s: waiting %.2f s for the upstream's rate limit", request.what, seconds)
        if self._stats.hook is not None:
            self._stats.hook.waited(seconds)
        self._sleep(seconds)


def take_turn(
    limiter: Limiter,
    token: str,
    *,
    sleep: Callable[[float], None],
    deadline: Deadline | None,
    what: str,
) -> None:
    """Wait until ``limiter`` gives ``token`` a turn; a wait past ``deadline`` is not
    started (:class:`~syncworker.errors.DeadlineExceededError` instead)."""
    while wait := limiter.acquire(token):
        wait = SLOT_POLL if wait < 0 else wait
        if deadline is not None:
            deadline.check_wait(wait, f"{what}: waiting for the upstream's rate limit")
        sleep(wait)


@dataclass
class LocalLimiter:
    """:class:`Limiter` for one process: a token bucket of one (requests are spaced
    ``1/req_per_sec`` apart, never bunched), a counter of requests in flight, a pause."""

    req_per_sec: float | None = None
    max_concurrent: int | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _next_free: float = 0.0
    _paused_until: float = 0.0
    _in_flight: int = 0

    def acquire(self, token: str) -> float:
        with self._lock:
            now = self.clock()
            if self._paused_until > now:
                return self._paused_until - now
            if self.max_concurrent is not None and self._in_flight >= self.max_concurrent:
                return -1.0
            if self.req_per_sec is not None:
                if self._next_free > now:
                    return self._next_free - now
                self._next_free = max(self._next_free, now) + 1.0 / self.req_per_sec
            if self.max_concurrent is not None:
                self._in_flight += 1
            return 0.0

    def release(self, token: str) -> None:
        if self.max_concurrent is None:
            return
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def pause(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds <= 0:
            return
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock() + seconds)
