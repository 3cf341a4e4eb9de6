"""Thread-safe counters a client keeps for progress reports and benchmarks."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ClientStats", "RequestHook", "StatsSnapshot"]


class RequestHook(Protocol):
    """Told of every answer and retry of one upstream (metrics; see ``engine.events``)."""

    def response(self, method: str, code: str) -> None:
        """One answer: ``code`` is the HTTP status, or ``timeout``/``error`` for none."""
        ...

    def retried(self) -> None: ...

    def waited(self, seconds: float) -> None:
        """The upstream's rate limit held a request back for ``seconds``."""
        ...

    def capped(self, seconds: float) -> None:
        """The upstream's download rate cap held a body's reading back for ``seconds``."""
        ...

    def pull_budget(self, remaining: int) -> None:
        """An answer declared ``remaining`` pulls left of the login's budget."""
        ...


@dataclass(frozen=True)
class StatsSnapshot:
    requests: int
    retries: int
    bytes_downloaded: int
    blob_gets: int


class ClientStats:
    """Counters shared by every thread using one client; ``hook``, if any, is told of each
    answer, retry, rate-limit wait and download-cap wait as well."""

    def __init__(self, hook: RequestHook | None = None) -> None:
        self.hook = hook
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.bytes_downloaded = 0
        self.blob_gets = 0

    def add(
        self, *, requests: int = 0, retries: int = 0, bytes_downloaded: int = 0, blob_gets: int = 0
    ) -> None:
        with self._lock:
            self.requests += requests
            self.retries += retries
            self.bytes_downloaded += bytes_downloaded
            self.blob_gets += blob_gets

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(self.requests, self.retries, self.bytes_downloaded, self.blob_gets)

    def __repr__(self) -> str:
        return f"ClientStats({self.snapshot()})"
