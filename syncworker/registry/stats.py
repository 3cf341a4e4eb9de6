"""Thread-safe counters a client keeps for progress reports and benchmarks."""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["ClientStats", "StatsSnapshot"]


@dataclass(frozen=True)
class StatsSnapshot:
    requests: int
    retries: int
    bytes_downloaded: int
    blob_gets: int


class ClientStats:
    """Counters shared by every thread using one client."""

    def __init__(self) -> None:
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
