"""The catalog walk: a run of a whole registry pages through its upstream's catalog and fans
out its repositories to workers (several to a ``sync_repos`` message). All of the walk's
logic is here, Celery-free; its state in Redis is ``syncworker/coord/catalogwalkstate.py``,
the Celery side sends its messages (:class:`WalkQueue`, ``syncworker/worker/send.py``), and
the ``walk_catalog`` task (``syncworker/tasks.py``) only wires them together.

- **Start.** Beat (or another service) sends ``walk_catalog(registry)`` without a run: a
  trigger (:func:`trigger_walk`), whose task id becomes the run id. ``syncworker trigger``
  and the API start a walk with :func:`start_walk`, which sends its first page under the run
  id. Either way the registry's walk marker is claimed first, so a walk in progress makes
  the trigger a no-op that names its run, and a sweep (``runs/sweep.py``) is sent with it.
- **A page** (:func:`continue_walk`, one ``walk_catalog`` message each): is this run still
  the registry's walk? → are ``walkAhead`` repositories or more waiting for workers? then
  nothing is listed, and this page is sent again in ``WALK_AHEAD_WAIT`` (back-pressure: a
  catalog of millions never sits in the broker) → read the cursor → list the page after it
  → fan out each repository the content rules keep and not yet enqueued in this run → move
  the cursor to the page's last entry by compare-and-set → send the next page.
- **End.** The catalog's last page ends the walk (marker and cursor cleared in one step);
  the run finishes once its last repository is counted. Pages that lead back to one already
  walked, a page given up for good (:func:`give_up_walk`) or a broker that refuses the
  first page end it with a ``(catalog)`` failure, so the next trigger starts afresh.
- **After a crash.** A walk whose worker died is redelivered and reads the cursor it left,
  skipping what it had already sent; a repository sent twice (a crash between sending and
  marking it) is still counted once in the run (``incr(once_for=repo)``), its second sync
  finding everything in the store. A page the broker lost is sent again by the sweep.

Each repository is counted into its run by ``runs/repocount.py``.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from syncworker.coord import FAILED, Coordinator
from syncworker.engine import Mirror
from syncworker.errors import CoordError

__all__ = [
    "CATALOG_FAILURE",
    "WALK_AHEAD_WAIT",
    "Claim",
    "Step",
    "WalkQueue",
    "claim_walk",
    "continue_walk",
    "give_up_walk",
    "record_catalog_failure",
    "start_walk",
    "trigger_walk",
    "walk_page",
]

log = logging.getLogger(__name__)

# The "repository" a failure to list the catalog is filed under in the run's failures.
CATALOG_FAILURE = "(catalog)"
# A walk whose next page would put more than ``walkAhead`` repositories in the broker looks
# again this much later (a countdown message, not a worker sleeping): short next to the time
# workers take to drain ``walkAhead`` repositories, so they never run dry.
WALK_AHEAD_WAIT = 2.0

Enqueue = Callable[[str, Sequence[str], str], None]  # registry, repos of a page, run id


class WalkQueue(Protocol):
    """What a walk sends, and how much of what it sent still waits for a worker. Sending
    raises :class:`CoordError` when the broker does not take the message."""

    def send_page(
        self, registry: str, run_id: str, *, delay: float = 0.0, first: bool = False
    ) -> None:
        """Send the walk's next page, ``delay`` seconds from now; ``first``: its first page,
        sent under the run id (as beat's trigger is), so a redelivered one continues its
        own walk."""

    def send_repos(self, registry: str, repos: Sequence[str], run_id: str) -> None:
        """Send ``repos`` of ``run_id`` to be synced, all in one write to the broker."""

    def repos_waiting(self) -> int:
        """How many repositories at most wait in their queue (not those a worker holds)."""

    def start_sweep(self, registry: str, run_id: str) -> None:
        """Have the run's sweep look at it in one sweep interval (``runs/sweep.py``)."""


class Step(enum.Enum):
    MORE = "more"  # the cursor moved on: enqueue the next page
    DONE = "done"  # end of the catalog: the walk is over
    RACED = "raced"  # another delivery of this page moved the cursor first
    STALE = "stale"  # this run is no longer the registry's walk
    LOOPED = "looped"  # the catalog's pages lead back to one already walked: the walk ends
    WAIT = "wait"  # the workers have enough waiting: this page again later


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of a trigger: the run that walks ``registry`` and whether it is new."""

    run_id: str
    started: bool


def claim_walk(coord: Coordinator, registry: str, run_id: str) -> Claim:
    """Start walk ``run_id`` of ``registry`` unless a walk is already in progress.

    ``run_id`` is stable across redeliveries of the same trigger (it is the trigger's task
    id), so a redelivered trigger continues its own walk, and one whose walk already ended
    does not start it again. The walk marker is claimed before the run is created;
    ``start_run`` is idempotent and :func:`walk_page` repeats it, so a crash in between
    is harmless.
    """
    current = coord.current_walk(registry)
    if current == run_id:
        return Claim(run_id, True)
    if current is None and coord.run_status(run_id) is None and coord.begin_walk(registry, run_id):
        coord.start_run(registry, run_id)
        return Claim(run_id, True)
    return Claim(coord.current_walk(registry) or run_id, False)


def start_walk(coord: Coordinator, queue: WalkQueue, registry: str) -> Claim:
    """Start a walk of ``registry`` now unless one is in progress (whose run it then names);
    ``syncworker trigger`` and ``syncworker api`` start walks through this."""
    claim = claim_walk(coord, registry, str(uuid.uuid4()))
    if claim.started:
        _send_first_page(coord, queue, registry, claim.run_id)
    return claim


def _send_first_page(coord: Coordinator, queue: WalkQueue, registry: str, run_id: str) -> None:
    """Send the walk's first page and its sweep; if the broker refuses, end the walk now, or
    it would block every trigger of this registry until its marker expires."""
    try:
        queue.send_page(registry, run_id, first=True)
        queue.start_sweep(registry, run_id)
    except CoordError as exc:
        coord.record_failure(run_id, CATALOG_FAILURE, None, str(exc))
        coord.finish_run(run_id, FAILED)  # first: ending the walk would finish it as done
        coord.end_walk(registry, run_id)
        raise


def trigger_walk(coord: Coordinator, queue: WalkQueue, registry: str, task_id: str) -> Claim:
    """A ``walk_catalog`` sent without a run (beat's): start the walk whose run id is
    ``task_id``, and its sweep, unless another walk is in progress; the trigger's own task
    then walks the first page."""
    claim = claim_walk(coord, registry, task_id)
    if not claim.started:
        log.info(
            "walk of %s is already in progress as run %s: this trigger is a no-op",
            registry,
            claim.run_id,
        )
        return claim
    queue.start_sweep(registry, claim.run_id)
    return claim


def continue_walk(
    coord: Coordinator,
    mirror: Mirror,
    queue: WalkQueue,
    registry: str,
    run_id: str,
    page_size: int | None,
    walk_ahead: int,
) -> Step:
    """Walk the page after the cursor (:func:`walk_page`) unless ``walk_ahead`` repositories
    or more wait for workers, then send what comes next: the next page, or this page again
    in ``WALK_AHEAD_WAIT``."""

    waiting = 0

    def room() -> bool:  # the walk stays at most walk_ahead repositories ahead of workers
        nonlocal waiting
        waiting = queue.repos_waiting()
        return waiting < walk_ahead

    step = walk_page(coord, mirror, registry, run_id, queue.send_repos, page_size, room)
    if step is Step.MORE:
        queue.send_page(registry, run_id)
    elif step is Step.WAIT:
        log.info(
            "walk %s of %s: up to %d repositories wait (walkAhead %d): next page in %gs",
            run_id, registry, waiting, walk_ahead, WALK_AHEAD_WAIT,
        )  # fmt: skip
        queue.send_page(registry, run_id, delay=WALK_AHEAD_WAIT)
    return step


def walk_page(
    coord: Coordinator,
    mirror: Mirror,
    registry: str,
    run_id: str,
    enqueue: Enqueue,
    page_size: int | None = None,
    room: Callable[[], bool] = lambda: True,
) -> Step:
    """Process the page after the cursor of ``registry``'s walk ``run_id``; unless
    ``room()`` says the repositories sent before are still waiting for workers: then
    nothing is listed or sent (``Step.WAIT``), and the caller asks again later."""
    if coord.current_walk(registry) != run_id:
        return Step.STALE
    if not room():
        return Step.WAIT
    coord.start_run(registry, run_id)
    cursor = coord.cursor(registry)
    if page_size is None:
        repos, next_last = mirror.list_page(registry, cursor)
    else:
        repos, next_last = mirror.list_page(registry, cursor, page_size)
    # Marked only once sent, so "marked" means "sent": a redelivered page skips what its
    # first delivery sent. A crash between sending and marking makes the redelivered page
    # send those again: duplicates that the repository lock and the counting once per
    # repository absorb. Marking first would lose them instead. The page goes out as one
    # batch, and is checked and marked in one step each.
    fresh = coord.not_enqueued(run_id, repos)
    enqueue(registry, fresh, run_id)
    coord.mark_enqueued(run_id, *fresh)  # also counts them into repos_total
    if next_last is None:
        coord.end_walk(registry, run_id)
        log.info("walk %s of %s: end of the catalog", run_id, registry)
        return Step.DONE
    if not coord.note_cursor(run_id, cursor, next_last):
        # An upstream whose next page starts where an earlier one did (it ignores ``last``,
        # or its ``Link`` goes back) would keep the walk, and its repositories, going forever.
        reason = f"catalog pagination loops: a second page after {next_last[:200]!r}"
        record_catalog_failure(coord, registry, run_id, reason)
        return Step.LOOPED
    if coord.advance_cursor(registry, cursor, next_last):
        return Step.MORE
    return Step.RACED


def give_up_walk(coord: Coordinator, registry: str, run_id: str, reason: str) -> None:
    """A page given up for good (retries exhausted, its workers killed under it): the walk
    ends with ``reason`` if this run still owns it."""
    if coord.current_walk(registry) == run_id:
        record_catalog_failure(coord, registry, run_id, reason)


def record_catalog_failure(coord: Coordinator, registry: str, run_id: str, reason: str) -> None:
    """The catalog could not be listed: the run keeps what was enqueued and ends with this
    failure, so the next trigger starts a fresh walk."""
    coord.record_failure(run_id, CATALOG_FAILURE, None, reason)
    coord.end_walk(registry, run_id)
