"""A counter sampled on a thread while a run goes on: what an upstream saw per second
(requests, body bytes), read from its own side. Nothing here measures the run itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

__all__ = ["Sampler"]


@dataclass
class Sampler:
    """``count()`` every ``interval`` seconds, and once on entry and on exit:
    ``samples`` are ``(monotonic time, total)``."""

    count: Callable[[], int]
    interval: float = 1.0
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Self:
        self._take()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._take()

    @property
    def total(self) -> int:
        return self.samples[-1][1] - self.samples[0][1]

    def rates(self) -> list[float]:
        """The rate between consecutive samples (whole intervals only)."""
        pairs = zip(self.samples, self.samples[1:], strict=False)
        whole = 0.9 * self.interval
        return [(n2 - n1) / (t2 - t1) for (t1, n1), (t2, n2) in pairs if t2 - t1 >= whole]

    def rate(self) -> float:
        """The rate over the run: from the last sample before the count first moved to
        the end of the run (the last sample, taken once the run is over)."""
        first = self.samples[0][1]
        began = max(t for t, n in self.samples if n == first)
        return self.total / (self.samples[-1][0] - began)

    def _take(self) -> None:
        self.samples.append((time.monotonic(), self.count()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._take()
