"""A job's deadline ends when the job's thread is interrupted while it waits for work on
other threads (Celery's soft time limit raises in the task's thread): that work stops at its
next check, and the wait still lasts until it has (:meth:`Deadline.wait`). The interruption
here is a real signal, as Celery's is."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

import pytest

from syncworker.errors import DeadlineExceededError
from syncworker.registry import Deadline


class Interrupted(Exception):
    pass


class _Step:
    what = "GET /v2/r/blobs/sha256:abc"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def test_an_interrupted_wait_ends_the_deadline_and_waits_for_the_work() -> None:
    deadline = Deadline.unbounded()
    started, checks = threading.Event(), []

    def work() -> None:
        started.set()
        for _ in range(3000):  # 30 s, a bound for a deadline that never ends
            deadline.check(_Step())
            checks.append(1)
            time.sleep(0.01)

    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(work)
            assert started.wait(10)
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            with pytest.raises(Interrupted):
                deadline.wait([future])
            assert future.done()  # before the interruption left the wait
            error = future.exception()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert isinstance(error, DeadlineExceededError)
    assert str(error) == f"{_Step.what}: the end of its job (Interrupted) reached"
    assert 0 < len(checks) < 3000


def test_an_unbounded_deadline_lets_everything_through_until_ended() -> None:
    deadline = Deadline.unbounded()
    deadline.check(_Step())
    deadline.check_wait(3600.0, "a wait of an hour")
    deadline.end("stopped")
    with pytest.raises(DeadlineExceededError, match="stopped"):
        deadline.check(_Step())
