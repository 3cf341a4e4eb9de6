"""A job's deadline ends when the job's thread is interrupted while it waits for work on
other threads (Celery's soft time limit raises in the task's thread): that work stops at its
next check, and the wait still lasts until it has (:meth:`Deadline.stopping`). The
interruption here is a real signal, as Celery's is (SIGUSR1: pytest-timeout keeps SIGALRM)."""

from __future__ import annotations

import os
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
    checked, checks = threading.Event(), []

    def work() -> None:
        for _ in range(3000):  # 30 s, a bound for a deadline that never ends
            deadline.check(_Step())
            checks.append(1)
            checked.set()
            time.sleep(0.01)

    previous = signal.signal(signal.SIGUSR1, _interrupt)
    try:
        with ThreadPoolExecutor(1) as pool:
            with pytest.raises(Interrupted), deadline.stopping() as futures:
                futures.append(pool.submit(work))
                assert checked.wait(10)
                threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
            assert futures[0].done()  # before the interruption left the block
            error = futures[0].exception()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert isinstance(error, DeadlineExceededError)
    assert str(error) == f"{_Step.what}: the end of its job (Interrupted) reached"
    assert 0 < len(checks) < 3000


def test_an_unbounded_deadline_lets_everything_through_until_ended() -> None:
    deadline = Deadline.unbounded()
    assert deadline.check(_Step()) == float("inf")
    deadline.check_wait(3600.0, "a wait of an hour")
    assert not deadline.ended()
    deadline.end("stopped")
    assert deadline.ended()
    with pytest.raises(DeadlineExceededError, match="stopped"):
        deadline.check(_Step())


def test_work_not_started_when_the_block_fails_is_cancelled_not_waited_for() -> None:
    """The pool's one thread is busy elsewhere: what the job queued behind it is cancelled
    when the job's block raises, and the job moves on at once."""
    deadline, release = Deadline.unbounded(), threading.Event()
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(release.wait, 30)
        try:
            with pytest.raises(Interrupted), deadline.stopping() as futures:
                futures.append(pool.submit(time.sleep, 0))
                raise Interrupted
            assert futures[0].cancelled() and not busy.done()
        finally:
            release.set()
