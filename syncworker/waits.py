"""How long coordination waits: the named defaults of the engine's ``Locks`` protocol.

One place for both implementations (``engine/locks.py`` in one process, ``coord/redislocks.py`` in
Redis; ``tests/test_coord_locks.py`` holds both to them) and for the callers that choose a
lock wait of their own. A leaf, like ``errors``: the engine and ``coord`` both import it and
neither imports the other.

A blob flight waiter decides with :class:`FlightWatch`, the same in both implementations:
it waits while its holder makes progress or beats (alive, waiting on purpose:
:mod:`syncworker.heartbeat`), takes the flight over from a holder that did neither for
:attr:`LockWaits.stall`, and fetches from its own upstream once a holder
fetching from *another* upstream has kept it :attr:`LockWaits.foreign` seconds. So an
upstream that trickles a popular layer slows its own copies only.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

__all__ = [
    "BATCH_REPO_WAIT",
    "GC_REPO_WAIT",
    "LOCK_TTL",
    "REPAIR_REPO_WAIT",
    "REPO_WAIT",
    "RUNS_KEPT",
    "TASK_REPO_WAIT",
    "FlightWatch",
    "LockWaits",
    "Verdict",
]

log = logging.getLogger(__name__)

#: How long a Redis lock outlives its holder's last renewal (``syncworker.lockTtl``): a
#: holder killed with SIGKILL frees its locks this long after; a live one renews them every
#: third of it, and stops removing anything once it finds one lost.
LOCK_TTL = 60.0
#: Runs per registry kept in Redis (``syncworker.runsKept``): the one going on and the
#: most recent finished ones.
RUNS_KEPT = 20
#: ``repo_lock``'s default: a sync in one process waits its turn as long as it takes.
REPO_WAIT: float | None = None
#: A Celery task waits this long for a busy repository, then retries later: a worker is not
#: tied up behind another worker's long copy.
TASK_REPO_WAIT = 10.0
#: A repository of a batch (``sync_repos``) waits only this long: the rest of its batch
#: waits behind it, so a busy one goes to a ``sync_repo`` message of its own instead.
BATCH_REPO_WAIT = 1.0
#: ``syncworker gc`` waits this long for a repository a sync holds, then reports it busy.
GC_REPO_WAIT = 60.0
#: ``syncworker check --repair`` in one process waits this long for a sync or gc holding a
#: repository, then leaves it unrepaired (a worker's check waits ``TASK_REPO_WAIT``).
REPAIR_REPO_WAIT = 60.0


@dataclass(frozen=True, slots=True)
class LockWaits:
    """The single-flights' waits (seconds), identical in every ``Locks`` implementation."""

    #: The longest a flight waiter waits for others before LockBusy (a task retries later).
    flight: float = 3600.0
    #: A blob flight holder whose byte count has not moved for this long, and that has not
    #: beaten meanwhile (alive, waiting on purpose), loses the flight to a waiter. Longer
    #: than a read timeout's worth of silence, so a holder that is merely reconnecting keeps
    #: it.
    stall: float = 30.0
    #: A waiter whose holder fetches from another upstream fetches from its own after this
    #: long: small blobs still come once for the cluster, a trickling upstream delays no one
    #: else by more than this.
    foreign: float = 5.0
    #: A blob flight that finished this recently makes the next holder look in the store
    #: again (it may have stored the blob since the caller looked).
    recent: float = 300.0
    #: A holder publishes its byte count, and its heartbeat, at most this often.
    progress_every: float = 1.0

    def __post_init__(self) -> None:
        for name in ("flight", "stall", "foreign", "recent", "progress_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"lock wait {name} must be positive, got {getattr(self, name)}")


class Verdict(enum.Enum):
    WAIT = "wait"
    #: The holder stopped making progress: replace it as the holder.
    TAKE_OVER = "take over"
    #: The holder fetches from another upstream and took too long: fetch from our own.
    OWN_UPSTREAM = "own upstream"


class FlightWatch:
    """A blob flight waiter's view of the holders it has seen, on the caller's clock.

    :meth:`see` is told the holder (an identity), its upstream, its byte count and its
    heartbeat count at each look, and answers what to do (logging why it stops waiting). A
    count that changed is a holder alive; one not known (None: not published yet, or its
    entry expired) tells nothing, so an expired entry never passes for progress. A new
    holder (one took over) starts the clocks again."""

    __slots__ = ("_beats", "_holder", "_key", "_moved", "_progress", "_since", "_source", "_waits")

    def __init__(self, key: str, source: str, waits: LockWaits) -> None:
        self._key = key
        self._source = source
        self._waits = waits
        self._holder: object = None
        self._progress: int | None = None
        self._beats: int | None = None
        self._since = 0.0
        self._moved = 0.0

    def see(
        self,
        holder: object,
        source: str | None,
        progress: int | None,
        beats: int | None,
        now: float,
    ) -> Verdict:
        """``source`` None: the holder has not said yet (it has only just begun)."""
        if holder != self._holder:
            self._holder, self._progress, self._beats = holder, progress, beats
            self._since = self._moved = now
        else:
            if progress is not None and progress != self._progress:
                self._progress, self._moved = progress, now
            if beats is not None and beats != self._beats:
                self._beats, self._moved = beats, now
        foreign = source is not None and source != self._source
        if foreign and now - self._since >= self._waits.foreign:
            log.info(
                "blob %s: fetching it from %s, not waiting longer for its holder's fetch from %s",
                self._key,
                self._source,
                source,
            )
            return Verdict.OWN_UPSTREAM
        if now - self._moved >= self._waits.stall:
            log.warning(
                "blob %s: its holder (fetching from %s) made no progress and was not waiting "
                "on purpose for %gs; taking its flight over",
                self._key,
                source or "an upstream",
                self._waits.stall,
            )
            return Verdict.TAKE_OVER
        return Verdict.WAIT
