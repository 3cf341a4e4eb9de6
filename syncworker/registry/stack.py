"""The HTTP stack of one upstream, composed in this one place, and what the protocol
modules (catalog, tags, manifests, blobs, push) ask of it: a request for a path and a
scope, a response back.

Outermost first (each a :class:`~.http.Handler` wrapping the next; see :mod:`.http`)::

    Failover → Retry → Statuses → Auth → Redirects → Budget (the login's pulls)
    → RateLimit (when limited) → Throttle (with a download rate cap) → RequestLog → Pool

The shared budgets of the upstream (:class:`~.gates.Gates`) decide which of the optional
layers are there.

A view bounded by a deadline (:meth:`Stack.bounded`) shares every layer and only stamps
its requests with the deadline, which each layer honours.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Mapping, Sequence

from syncworker.heartbeat import pause
from syncworker.registry.addresses import Origins
from syncworker.registry.authorizer import Auth, CredentialsArg, logins_by_origin
from syncworker.registry.bandwidth import Throttle
from syncworker.registry.budget import Budget
from syncworker.registry.deadline import Deadline
from syncworker.registry.failover import Failover
from syncworker.registry.gates import NO_GATES, Gates
from syncworker.registry.http import Body, Handler, Params, Request, Response
from syncworker.registry.limits import RateLimit
from syncworker.registry.options import ClientOptions
from syncworker.registry.paid import PaidFor
from syncworker.registry.pool import Pool
from syncworker.registry.redirects import Redirects
from syncworker.registry.requestlog import RequestLog
from syncworker.registry.retrying import Retry
from syncworker.registry.stats import ClientStats
from syncworker.registry.statuses import Statuses
from syncworker.retry import REQUESTS, Retrying

__all__ = ["Stack"]


class Stack:
    """Thread-safe: the pool, tokens, learnt challenges and counters are shared by every
    thread; the per-request state lives in the request."""

    def __init__(
        self,
        urls: Sequence[str],
        credentials: CredentialsArg,
        options: ClientOptions,
        stats: ClientStats,
        *,
        sleep: Callable[[float], None] = pause,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        gates: Gates = NO_GATES,
    ) -> None:
        bases = [u.rstrip("/") for u in urls]
        origins = Origins(bases)
        self.options = options
        self.stats = stats
        self._pool = Pool(origins, options, stats)
        handler: Handler = RequestLog(self._pool)
        if gates.bandwidth is not None:
            handler = Throttle(handler, gates.bandwidth, stats, sleep)
        if gates.limiter is not None:
            handler = RateLimit(handler, gates.limiter, origins, stats, sleep)
        budget = None
        if gates.budget is not None:
            reserve = options.pull_budget_reserve
            budget = Budget(handler, gates.budget, origins, reserve, stats, sleep)
            handler = budget
        #: The manifests this upstream's pull budget was spent on (:mod:`.paid`).
        self.paid = PaidFor(gates.paid, budget)
        handler = Redirects(handler, self._pool.admit)
        logins = logins_by_origin(bases, credentials)
        handler = Auth(handler, origins, logins, self._pool.admit, clock)
        handler = Statuses(handler)
        policy = REQUESTS.but(retries=options.max_retries, base=options.retry_delay)
        self._retry = Retry(handler, policy, stats, sleep, rng or random.Random())
        self._handler = Failover(self._retry, bases)
        self._deadline: Deadline | None = None

    def bounded(self, deadline: Deadline) -> Stack:
        """This stack (same layers) with every request, body and retry wait after
        ``deadline`` failing with :class:`DeadlineExceededError`."""
        view = copy.copy(self)
        view._deadline = deadline
        return view

    @property
    def refetching(self) -> Retrying:
        """The retry policy under this view's deadline, for a caller that retries a whole
        exchange itself (a blob streamed into a store); each retry counted."""
        return Retrying(self._retry.policy, self._deadline, self._retry.counted)

    def fetch(
        self,
        method: str,
        target: str,
        *,
        scope: str | None,
        cap: int,
        params: Params = (),
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        check: Callable[[Response], None] | None = None,
    ) -> Response:
        """Send and read the whole body (at most ``cap`` bytes: ``response.body``),
        retried; ``check(response)`` runs inside the retry: bytes it finds altered
        (:class:`DigestMismatchError`) are fetched again."""
        request = Request(
            method,
            target,
            headers or {},
            params,
            data,
            scope,
            self._deadline,
            read=cap,
            check=check,
        )
        return self._handler.send(request)

    def open(
        self,
        method: str,
        target: str,
        *,
        scope: str | None,
        params: Params = (),
        headers: Mapping[str, str] | None = None,
        data: Body = None,
    ) -> Response:
        """Send and return the response unread, for streaming. The caller closes it.

        One attempt per URL: the caller retries the whole stream, not this request. A
        streamed ``data`` is sent once; its caller authorises ``scope`` beforehand."""
        request = Request(method, target, headers or {}, params, data, scope, self._deadline)
        return self._handler.send(request)

    def close(self) -> None:
        self._pool.close()
