"""A stub upstream that counts pulls as Docker Hub does, in front of a real registry.

    with PullCounter(server.url, limit=5, window=3600) as hub:   # then mirror from hub.url
        hub.counted, hub.refused                                   # GETs counted, 429s sent
        hub.refill()                                               # the window ends now

Docker Hub (https://docs.docker.com/docker-hub/usage/pulls/) counts a pull for each
``GET /v2/<name>/manifests/<ref>``; a ``HEAD`` is free. Both answers carry
``ratelimit-limit: <L>;w=<seconds>`` and ``ratelimit-remaining: <N>;w=<seconds>``. Past the
budget a GET answers ``429`` with ``TOOMANYREQUESTS`` (and the headers) without reaching
the registry. The window is fixed: it starts at the first pull counted and the budget is
whole again ``window`` seconds later. Everything else is forwarded untouched.
"""

from __future__ import annotations

import re
import threading
import time

from tests.support.fault_proxy import Fault, FaultProxy

__all__ = ["PullCounter"]

_MANIFEST = re.compile(r"^/v2/.+/manifests/[^/?]+")


class PullCounter(FaultProxy):
    def __init__(self, upstream: str, *, limit: int, window: int) -> None:
        super().__init__(upstream, faults=(Fault.THROTTLE,), retry_after=window)
        self.limit, self.window = limit, window
        self.counted = 0
        self.refused = 0
        self.heads = 0
        self._pulls = 0
        self._started: float | None = None
        self._local = threading.local()

    def refill(self) -> None:
        """End the window now: the whole budget is back."""
        with self._lock:
            self._started, self._pulls = None, 0

    def draw(self, method: str, path: str) -> Fault | None:
        self._local.headers = []
        if not _MANIFEST.match(path):
            return None
        with self._lock:
            now = time.monotonic()
            if self._started is not None and now >= self._started + self.window:
                self._started, self._pulls = None, 0
            refused = method == "GET" and self._pulls >= self.limit
            if method == "GET" and not refused:
                self._pulls += 1
                self.counted += 1
                self._started = now if self._started is None else self._started
            self.refused += refused
            self.heads += method == "HEAD"
            remaining = self.limit - self._pulls
        self._local.headers = [
            ("ratelimit-limit", f"{self.limit};w={self.window}"),
            ("ratelimit-remaining", f"{remaining};w={self.window}"),
        ]
        return Fault.THROTTLE if refused else None

    def extra_headers(self) -> list[tuple[str, str]]:
        return list(getattr(self._local, "headers", []))
