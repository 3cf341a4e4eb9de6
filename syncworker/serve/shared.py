"""A value read again at most every few seconds, by one reader at a time: callers that
arrive while it is read wait for that read and share its result."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Shared"]

T = TypeVar("T")


class Shared(Generic[T]):
    """``read()``'s result, kept ``seconds`` after the read that made it ended (by
    ``clock``). A failed read keeps nothing: the next caller reads again."""

    def __init__(
        self, read: Callable[[], T], seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._read, self._seconds, self._clock = read, seconds, clock
        # Held through a read: one at a time, and those waiting find its result.
        self._lock = threading.Lock()
        self._value: T | None = None
        self._until = 0.0

    def get(self) -> T:
        with self._lock:
            if self._value is None or self._clock() >= self._until:
                self._value = self._read()
                self._until = self._clock() + self._seconds
            return self._value
