"""The failover layer: a request for a path goes to the upstream's URLs in turn.

The URL that answered last is tried first; the next one only after a temporary failure
(``retry.classify``) of the one before, with all of its retries spent. A request for an
absolute URL (an upload session's Location) belongs to one host: no failover.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from syncworker.errors import SyncworkerError
from syncworker.registry.http import Handler, Request, Response
from syncworker.retry import classify

__all__ = ["Failover"]


class Failover:
    def __init__(self, inner: Handler, bases: Sequence[str]) -> None:
        if not bases:
            raise ValueError("a registry needs at least one URL")
        self._inner = inner
        self._bases = [b.rstrip("/") for b in bases]
        self._preferred = 0
        self._lock = threading.Lock()

    def send(self, request: Request) -> Response:
        if "://" in request.url:
            return self._inner.send(request)
        with self._lock:
            first = self._preferred
        order = [first] + [i for i in range(len(self._bases)) if i != first]
        failure: SyncworkerError | None = None
        for index in order:
            try:
                response = self._inner.send(request.but(url=self._bases[index] + request.url))
            except SyncworkerError as exc:
                if not classify(exc):
                    raise
                failure = exc
                continue
            with self._lock:
                self._preferred = index
            return response
        assert failure is not None
        raise failure
