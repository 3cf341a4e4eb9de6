"""The retry layer: a request that failed temporarily is sent again, under its deadline.

An attempt is the request and, when it asks (``Request.read``), reading its whole body and
checking it (``Request.check``), so a body cut short or altered on the way is fetched
again too. A streamed response (no ``read``) is one attempt: its caller retries the whole
stream (``RegistryClient.refetching``), so retries never nest. What is worth a retry and
how long to wait are the package's policy (``syncworker/retry.py``); each retry is
counted in the client's stats and told to its hook (``syncworker_upstream_retries_total``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from syncworker.registry.http import Handler, Request, Response
from syncworker.registry.requestlog import log
from syncworker.registry.stats import ClientStats
from syncworker.retry import Policy, Retrying

__all__ = ["Retry"]


class Retry:
    def __init__(
        self,
        inner: Handler,
        policy: Policy,
        stats: ClientStats,
        sleep: Callable[[float], None],
        rng: random.Random,
    ) -> None:
        self._inner = inner
        self.policy = policy
        self._stats = stats
        self._sleep = sleep
        self._rng = rng

    def send(self, request: Request) -> Response:
        if request.read is None:
            return self._inner.send(request)
        return self.retrying(request).run(
            lambda: self._attempt(request),
            sleep=self._sleep,
            jitter=self._rng.random,
            on_retry=lambda error, delay: log.debug(
                "%s: retry in %.2f s after %s", request.what, delay, error
            ),
        )

    def retrying(self, request: Request) -> Retrying:
        """This layer's policy for ``request`` (its deadline), each retry counted."""
        return Retrying(self.policy, request.deadline, self.counted)

    def counted(self) -> None:
        self._stats.add(retries=1)
        if self._stats.hook is not None:
            self._stats.hook.retried()

    def _attempt(self, request: Request) -> Response:
        assert request.read is not None
        with self._inner.send(request) as response:
            # Read even a HEAD's empty body: only a consumed response gives its
            # connection back to the pool (closing an unread one drops it).
            response.read(request.read)
        if request.check is not None:
            request.check(response)
        return response
