"""A pull budget per upstream identity: Docker Hub's ``ratelimit-limit`` and
``ratelimit-remaining`` spent, never overspent.

Docker Hub counts a pull for each ``GET /v2/<name>/manifests/<ref>`` (a ``HEAD`` is free)
and sends ``ratelimit-limit: <L>;w=<seconds>`` and ``ratelimit-remaining: <N>;w=<seconds>``
on each manifest answer; past the budget a GET answers ``429 TOOMANYREQUESTS``
(https://docs.docker.com/docker-hub/usage/pulls/). Any upstream sending these headers gets
the same treatment: the :class:`Budget` layer notes the headers of every answer, and a
manifest GET that would spend the last pull (or dig into ``pullBudgetReserve``) is not
sent (after a free ``HEAD`` of it, in case the budget came back early): it raises
:class:`~syncworker.errors.PullDeferred`, naming when the budget refills, and the engine
defers the tag instead of failing it.

The state is shared per upstream identity (registry and login, a login's name hashed) by
every thread of a process (:class:`LocalPullBudget`) or, through Redis, by every worker
(``syncworker.coord``'s ``Coordinator.pull_budget``); each step is atomic. GETs in flight
count against the budget until their answer says what is left, so concurrent senders never
overspend it. While nobody knows the budget (a first run, or every answer's state expired),
one sender finds out with a ``HEAD`` of the manifest it wants (free), and the others wait
for it; once an answer without the headers shows the upstream has none, this process asks
nothing more of the budget for that upstream.

When it refills: the headers say how long a window is, not when it began, so the refill
is taken as one window after the last pull seen counted (sure for a fixed window and for
a sliding one). Answers are noted in whatever order they come back, so a higher count is
believed only from a request sent after the count last went down (an older answer's would
overspend); so a refill earlier than that estimate is seen by the next HEAD.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from syncworker.errors import PullDeferred
from syncworker.registry.addresses import Origins
from syncworker.registry.auth import Credentials, Login
from syncworker.registry.http import Handler, Request, Response
from syncworker.registry.limits import SLOT_POLL, new_token
from syncworker.registry.stats import ClientStats

__all__ = [
    "PROBE",
    "Budget",
    "Headers",
    "LocalPullBudget",
    "PullBudget",
    "identity_of",
    "parse_headers",
]

log = logging.getLogger(__name__)
#: :meth:`PullBudget.take`'s answer to the sender that is to find out the budget.
PROBE = -2.0
_MANIFEST_PATH = re.compile(r"/v2/.+/manifests/[^/]+$")
_QUOTA = re.compile(r"\s*(\d+)\s*(?:;\s*w\s*=\s*(\d+))?")


class Headers(NamedTuple):
    """What one answer said of the budget."""

    limit: int
    remaining: int
    window: int


def parse_headers(headers: Mapping[str, str]) -> Headers | None:
    """The budget an answer's headers declare, or None when it declares none (or garbles
    it: a budget we cannot read is not one we can keep)."""
    limit, remaining = headers.get("ratelimit-limit"), headers.get("ratelimit-remaining")
    if limit is None or remaining is None:
        return None
    found_limit, found_remaining = _QUOTA.match(limit), _QUOTA.match(remaining)
    if found_limit is None or found_remaining is None:
        return None
    window = found_remaining.group(2) or found_limit.group(2)
    if window is None:
        return None
    return Headers(int(found_limit.group(1)), int(found_remaining.group(1)), int(window))


def identity_of(login: Login | None) -> str:
    """Who is counted upstream: the login's name (hashed: it names an account), a
    credential helper's login, or nobody (Docker Hub counts anonymous pulls per address)."""
    if login is None:
        return "anonymous"
    if not isinstance(login, Credentials):
        return "helper"
    return hashlib.sha256(login.username.encode()).hexdigest()[:16]


class PullBudget(Protocol):
    """One upstream identity's pull budget. Every method is one atomic step; none blocks."""

    def take(self, token: str, reserve: int) -> float:
        """Take a pull for the GET named ``token``: 0 when taken; :data:`PROBE` when the
        budget is not known and this sender is to find out (its pull is taken, should
        it find nothing out); -1 when another sender is finding out (poll); else the Unix
        time at which the budget refills (the GET must not be sent)."""
        ...

    def note(self, token: str | None, seen: Headers, sent_at: float) -> None:
        """An answer declared ``seen``; ``token``: the GET it answers, whose pull it took;
        ``sent_at``: the Unix time its request was sent."""
        ...

    def unlimited(self, token: str | None) -> None:
        """An answer declared no budget: this upstream has none."""
        ...

    def forgo(self, token: str) -> None:
        """The GET named ``token`` got no answer: its pull is counted as spent."""
        ...


class Budget:
    """The budget layer: every answer from the upstream's own URLs is noted; a manifest
    GET takes a pull first, and is refused (:class:`PullDeferred`) when none is left
    above ``reserve``."""

    def __init__(
        self,
        inner: Handler,
        budget: PullBudget,
        origins: Origins,
        reserve: int,
        stats: ClientStats,
        sleep: Callable[[float], None],
    ) -> None:
        self._inner = inner
        self._stats = stats
        self._budget = budget
        self._origins = origins
        self._reserve = reserve
        self._sleep = sleep
        # Set once an answer showed this upstream has no budget: nothing more to ask.
        self._none = False
        #: The window (seconds) the last answer declaring a budget named; 0 before one.
        self.window = 0

    @property
    def counts_pulls(self) -> bool:
        """Whether this upstream may count manifest GETs: not yet shown to have no budget."""
        return not self._none

    def send(self, request: Request) -> Response:
        if self._none or not self._origins.own(request.url):
            return self._inner.send(request)
        token = None
        if request.method == "GET" and _MANIFEST_PATH.search(request.url.split("?")[0]):
            token = new_token()
            self._take(token, request)
        sent_at = time.time()
        try:
            response = self._inner.send(request)
        except BaseException:
            if token is not None:
                self._budget.forgo(token)
            raise
        seen = parse_headers(response.headers)
        if seen is not None:
            self._noted(token, seen, sent_at)
        elif _MANIFEST_PATH.search(request.url.split("?")[0]) and response.status < 400:
            self._none = True
            self._budget.unlimited(token)
        elif token is not None:
            # An error that declares nothing (a 429, the 404 of a missing tag): its pull
            # counts as spent and leaves the flight, else every later sender would wait
            # for an answer already in (a lease's length, in Redis; for ever, in-process).
            self._budget.forgo(token)
        return response

    def _take(self, token: str, request: Request) -> None:
        rechecked = False
        while answer := self._budget.take(token, self._reserve):
            if answer > 0:
                if rechecked:
                    raise PullDeferred(request.what, answer)
                # Spent as noted; the upstream may have refilled before the estimate.
                self._probe(None, request)
                rechecked = True
                continue
            if answer == PROBE:
                try:
                    learnt = self._probe(token, request)
                except BaseException:
                    self._budget.forgo(token)  # the next sender finds out instead
                    raise
                if not learnt:
                    return  # nothing learnt: the GET itself finds out, its pull taken
                continue
            if request.deadline is not None:
                request.deadline.check_wait(SLOT_POLL, f"{request.what}: waiting for the budget")
            self._sleep(SLOT_POLL)

    def _noted(self, token: str | None, seen: Headers, sent_at: float) -> None:
        self._budget.note(token, seen, sent_at)
        self.window = seen.window
        if self._stats.hook is not None:
            self._stats.hook.pull_budget(seen.remaining)

    def _probe(self, token: str | None, request: Request) -> bool:
        """A ``HEAD`` of the manifest (free) to learn the budget; whether it did.
        ``token``: the pull taken for the sender finding out, if any."""
        log.debug("%s: the pull budget is not known: HEAD first", request.what)
        sent_at = time.time()
        with self._inner.send(request.but(method="HEAD", read=None, check=None)) as response:
            seen = parse_headers(response.headers)
            if seen is not None:
                self._noted(token, seen, sent_at)
                return True
            if response.status < 400 and token is not None:
                self._none = True
                self._budget.unlimited(token)
                return True
            return False


@dataclass
class LocalPullBudget:
    """:class:`PullBudget` for one process."""

    clock: Callable[[], float] = field(default=time.time, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: None until an answer says; -1 once one said there is no budget.
    _remaining: int | None = None
    _limit: int = 0
    _window: int = 0
    _refill_at: float = 0.0
    #: When the count last went down: only a request sent later may raise it.
    _lowered_at: float = 0.0
    _in_flight: set[str] = field(default_factory=set)

    def take(self, token: str, reserve: int) -> float:
        with self._lock:
            now = self.clock()
            if self._remaining is not None and self._refill_at and now >= self._refill_at:
                self._remaining, self._refill_at = self._limit, 0.0
            if self._remaining is None:
                if self._in_flight:
                    return -1.0
                self._in_flight.add(token)
                return PROBE
            if self._remaining >= 0 and self._remaining - len(self._in_flight) <= reserve:
                return self._refill_at or now + self._window
            self._in_flight.add(token)
            return 0.0

    def note(self, token: str | None, seen: Headers, sent_at: float) -> None:
        with self._lock:
            self._in_flight.discard(token or "")
            before = self._remaining
            self._limit, self._window = seen.limit, seen.window
            remaining = seen.remaining
            if before is not None and 0 <= before < remaining and sent_at <= self._lowered_at:
                remaining = before  # an older answer, noted late
            if remaining < seen.limit and (before is None or before < 0 or remaining < before):
                self._lowered_at = self.clock()
                self._refill_at = self._lowered_at + seen.window
            elif remaining >= seen.limit:
                self._refill_at = 0.0
            self._remaining = remaining

    def unlimited(self, token: str | None) -> None:
        with self._lock:
            self._in_flight.discard(token or "")
            self._remaining = -1

    def forgo(self, token: str) -> None:
        with self._lock:
            if token in self._in_flight:
                self._in_flight.discard(token)
                if self._remaining is not None and self._remaining > 0:
                    self._remaining -= 1
