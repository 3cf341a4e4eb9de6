"""An absolute deadline for everything a client does for one job (zot's ``syncTimeout``).

Per-request timeouts bound each wait for a byte, not the whole: a server sending one byte
every few seconds would hold a worker forever. A :class:`Deadline` is checked before
every request, between the chunks of every body and before every retry's wait; past it,
the operation fails with :class:`~syncworker.errors.DeadlineExceededError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from syncworker.errors import DeadlineExceededError

__all__ = ["Deadline", "Operation"]


class Operation(Protocol):
    """What a deadline check names when it fails (a request, a response)."""

    @property
    def what(self) -> str: ...


@dataclass(frozen=True)
class Deadline:
    """``at`` is a :func:`time.monotonic` instant; ``label`` names the setting that set it."""

    at: float
    label: str
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    @classmethod
    def after(cls, seconds: float, label: str) -> Deadline:
        return cls(time.monotonic() + seconds, label)

    def remaining(self) -> float:
        return self.at - self.clock()

    def check(self, operation: Operation) -> None:
        """Raise unless some time is left, naming ``operation``: its ``what``, built only
        then (it runs before every request and between every body's chunks)."""
        if self.remaining() <= 0:
            raise DeadlineExceededError(f"{operation.what}: {self.label} reached")

    def check_wait(self, seconds: float, what: str) -> None:
        """Raise if waiting ``seconds`` would end past the deadline."""
        if self.remaining() <= seconds:
            raise DeadlineExceededError(f"{what}; no time left to retry before {self.label}")
