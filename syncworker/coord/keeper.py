"""One thread per Coordinator that keeps every lock held through it alive.

A Redis lock has a TTL so that a worker killed with SIGKILL does not hold it forever; while
its holder works, the keeper re-arms the TTL every ``ttl / EXTEND_PER_TTL``, so a long copy
keeps its lock. One thread serves all the locks of the process (a worker holds one per blob
in flight), started on the first lock, ended when idle or by :meth:`Keeper.stop`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from redis.exceptions import LockNotOwnedError, RedisError
from redis.lock import Lock

__all__ = ["EXTEND_PER_TTL", "Held", "Keeper", "new_lock"]

log = logging.getLogger(__name__)

# Re-arm the TTL three times per period: two extensions can fail (a Redis blip) before the
# lock expires under a live holder.
EXTEND_PER_TTL = 3
# A keeper with nothing to keep for this long ends; the next lock starts another. A busy
# worker keeps its one thread, an idle or forgotten Coordinator holds none.
IDLE_EXIT = 30.0


# How often redis-py's blocking acquire asks again. Waiters of a lock wait for another
# worker's whole copy, so a tenth of a second costs nothing in latency and little in load.
POLL_SECONDS = 0.1


def new_lock(
    client: redis.Redis, key: str, ttl: float, blocking_timeout: float | None = None
) -> Lock:
    """A redis-py lock on ``key`` that the keeper can keep: ``thread_local=False``, so the
    keeper thread re-arms it with the holder's token."""
    if ttl <= 0:
        raise ValueError(f"lock ttl must be positive, got {ttl}")
    return Lock(
        client,
        key,
        timeout=ttl,
        sleep=POLL_SECONDS,
        blocking_timeout=blocking_timeout,
        thread_local=False,
    )


@dataclass(eq=False, slots=True)
class Held:
    """A lock in the keeper's care; ``lost`` once found expired under its holder."""

    lock: Lock
    interval: float
    due: float
    lost: bool = False


class Keeper:
    """Re-arms the TTL of every lock registered with :meth:`keep` until it is released."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: set[Held] = set()
        self._thread: threading.Thread | None = None
        # Set when :meth:`stop` tells ``_thread`` to end; each thread has its own, so a
        # lock kept while a stopped thread is still ending starts a new one.
        self._told_to_stop = threading.Event()

    @contextmanager
    def keep(self, lock: Lock, ttl: float) -> Iterator[Held]:
        """Keep ``lock`` (acquired, ``ttl`` seconds) alive for the duration of the block."""
        interval = ttl / EXTEND_PER_TTL
        held = Held(lock, interval, time.monotonic() + interval)
        with self._cond:
            self._held.add(held)
            self._start()
            self._cond.notify()
        try:
            yield held
        finally:
            with self._cond:
                self._held.discard(held)

    def stop(self) -> None:
        """End the thread (a later :meth:`keep` starts a new one)."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._told_to_stop.set()
            self._cond.notify_all()
        if thread is not None:
            thread.join()

    def _start(self) -> None:
        # Also after a fork: the child inherits the thread object, not the thread.
        thread = self._thread
        if thread is None or self._told_to_stop.is_set() or not thread.is_alive():
            self._told_to_stop = told = threading.Event()
            self._thread = threading.Thread(
                target=self._keep_alive, args=(told,), name="lock-keeper", daemon=True
            )
            self._thread.start()

    def _keep_alive(self, told_to_stop: threading.Event) -> None:
        while (due := self._next_due(told_to_stop)) is not None:
            for held in due:
                self._rearm(held)

    def _next_due(self, told_to_stop: threading.Event) -> list[Held] | None:
        """Wait until some locks are due (returned, rescheduled) or this thread is told to
        stop (None)."""
        with self._cond:
            while not told_to_stop.is_set():
                if not self._held:
                    if not self._cond.wait(IDLE_EXIT) and not self._held:
                        if self._thread is threading.current_thread():
                            self._thread = None
                        return None
                    continue
                now = time.monotonic()
                due = [held for held in self._held if held.due <= now]
                if due:
                    for held in due:
                        held.due = now + held.interval
                    return due
                self._cond.wait(min(held.due for held in self._held) - now)
            return None

    def _rearm(self, held: Held) -> None:
        name = held.lock.name
        try:
            held.lock.reacquire()
        except LockNotOwnedError:
            with self._cond:
                if held not in self._held:
                    return  # released while this extension was on its way
                held.lost = True
                self._held.discard(held)
            log.warning("lock %s expired while held; another worker may take it", name)
        except RedisError as exc:
            # A blip: the TTL still has two periods left, try again next period.
            log.warning("could not extend lock %s: %s", name, exc)
