"""An absolute deadline for everything a client does for one job (zot's ``syncTimeout``).

Per-request timeouts bound each wait for a byte, not the whole: a server sending one byte
every few seconds would hold a worker forever. A :class:`Deadline` is checked before
every request, between the chunks of every body and before every retry's wait; past it,
the operation fails with :class:`~syncworker.errors.DeadlineExceededError`.

A job without a time limit has one too, unbounded, which ends when the job's thread is
interrupted while its other threads work for it (:meth:`Deadline.stopping`): Celery's soft
time limit raises in the thread of the task, and the blobs and tags it started then stop at
their next check (or their next look at a blob flight they wait for) instead of running on
after the task has failed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from syncworker.errors import DeadlineExceededError

__all__ = ["Deadline", "Operation"]


class Operation(Protocol):
    """What a deadline check names when it fails (a request, a response)."""

    @property
    def what(self) -> str: ...


@dataclass(eq=False)
class Deadline:
    """``at`` is a :func:`time.monotonic` instant; ``label`` names the setting that set it,
    or what ended it."""

    at: float
    label: str
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    @classmethod
    def after(cls, seconds: float, label: str) -> Deadline:
        return cls(time.monotonic() + seconds, label)

    @classmethod
    def unbounded(cls) -> Deadline:
        """No limit, until :meth:`end`."""
        return cls(math.inf, "no deadline")

    def end(self, label: str) -> None:
        """Reached now: every check from here on fails, naming ``label``."""
        self.label = label
        self.at = -math.inf

    def ended(self) -> bool:
        """Whether :meth:`end` was called (not merely reached)."""
        return self.at == -math.inf

    @contextmanager
    def stopping(self) -> Iterator[list[Future[Any]]]:
        """A block that starts work of this deadline's job on other threads, each future
        added to the list it is given, and then waits until all of it is done. If the block
        or the wait raises (the job's thread interrupted: Celery's soft time limit), end
        this deadline, so that the work started stops at its next check, cancel the work
        not started yet, wait for the rest all the same and raise: nothing of the job runs
        on once its thread has moved on."""
        futures: list[Future[Any]] = []
        try:
            yield futures
            wait(futures)
        except BaseException as exc:
            self.end(f"the end of its job ({type(exc).__name__})")
            # A cancelled future counts as done only once a pool thread has dequeued it.
            wait([started for started in futures if not started.cancel()])
            raise

    def remaining(self) -> float:
        return self.at - self.clock()

    def check(self, operation: Operation) -> float:
        """The time left; raise unless there is some, naming ``operation``: its ``what``,
        built only then (it runs before every request and between every body's chunks)."""
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceededError(f"{operation.what}: {self.label} reached")
        return left

    def check_wait(self, seconds: float, what: str) -> None:
        """Raise if waiting ``seconds`` would end past the deadline."""
        if self.remaining() <= seconds:
            raise DeadlineExceededError(f"{what}; no time left to retry before {self.label}")
