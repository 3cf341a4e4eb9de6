"""A blob flight holder's heartbeat: alive while it waits on purpose, though no byte moves.

A flight's waiters take it over from a holder whose byte count stands still for
``LockWaits.stall`` (:class:`~syncworker.waits.FlightWatch`): a holder stuck on a dead
connection. A holder may stand still alive and well, though: waiting for the upstream's
rate limit, a pull budget slot, the download rate cap or a retry's backoff
(:func:`pause`), or for the store to take what it read (an S3 part upload, the completion of
a large upload: :func:`beating`). Meanwhile one daemon thread per process tells each such
flight it is alive every :data:`BEAT_SECONDS` (:meth:`Alive.alive`), so no waiter fetches
the blob a second time. Reading from the upstream never beats: that is what a stall is.

A leaf, like ``waits``: the registry client's waits, the engine and ``coord`` use it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

__all__ = ["BEAT_SECONDS", "Alive", "beating", "holding", "pause"]

log = logging.getLogger(__name__)

#: How often a waiting holder beats: well inside any ``LockWaits.stall`` worth having. The
#: flight itself may publish less often (``LockWaits.progress_every``).
BEAT_SECONDS = 1.0
# The beating thread ends after this long with nothing to beat for; the next wait starts it.
IDLE_EXIT = 30.0


class Alive(Protocol):
    """A blob flight as its heartbeat sees it."""

    def alive(self) -> None:
        """The holder is alive and waiting on purpose (no byte of the blob moves)."""
        ...


class _Beats:
    """The flights whose holders wait on purpose, and the one thread beating for them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: dict[Alive, int] = {}  # flight -> waits open on it (they nest)
        self._thread: threading.Thread | None = None

    @contextmanager
    def beating(self, flight: Alive) -> Iterator[None]:
        with self._cond:
            self._waiting[flight] = self._waiting.get(flight, 0) + 1
            # Also after a fork: the child inherits the thread object, not the thread.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._cond:
                left = self._waiting.pop(flight) - 1
                if left:
                    self._waiting[flight] = left
                else:
                    self._cond.notify()

    def _run(self) -> None:
        while (flights := self._due()) is not None:
            for flight in flights:
                try:
                    flight.alive()
                except Exception:  # a beat lost costs at worst a second fetch, never a wrong one
                    log.debug("could not tell a blob flight its holder is alive", exc_info=True)
            time.sleep(BEAT_SECONDS)

    def _due(self) -> list[Alive] | None:
        """The flights to beat for now; None (the thread ends) after IDLE_EXIT without any."""
        with self._cond:
            if not self._waiting and not self._cond.wait_for(lambda: self._waiting, IDLE_EXIT):
                if self._thread is threading.current_thread():
                    self._thread = None
                return None
            return list(self._waiting)


_BEATS = _Beats()
_held = threading.local()


def beating(flight: Alive) -> AbstractContextManager[None]:
    """Keep ``flight`` alive for its waiters for the duration of the block."""
    return _BEATS.beating(flight)


@contextmanager
def holding(flight: Alive) -> Iterator[None]:
    """The calling thread fetches for ``flight`` during the block: its :func:`pause` beats."""
    before = getattr(_held, "flight", None)
    _held.flight = flight
    try:
        yield
    finally:
        _held.flight = before


def pause(seconds: float) -> None:
    """``time.sleep`` for a wait on purpose (a rate limit, a pull budget, the download rate
    cap, a retry's backoff): the blob flight the calling thread fetches for, if any, stays
    alive for its waiters meanwhile."""
    flight: Alive | None = getattr(_held, "flight", None)
    if flight is None:
        time.sleep(seconds)
        return
    with _BEATS.beating(flight):
        time.sleep(seconds)
