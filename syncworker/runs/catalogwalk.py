"""The catalog walk, one page per call, and the run's accounting (``walk_catalog``).

Celery-free: the task passes ``enqueue`` (which sends ``sync_repo`` for each repository of
a page, in one batch), so this is the whole logic of a walk and of counting a repository
into its run.

A page is processed as: is this run still the registry's walk? → read the cursor → list
the page after it → fan out each matching repository not yet enqueued in this run →
compare-and-set the cursor to the page's last entry (or end the walk at the catalog's end).
A walk whose worker died is redelivered and reads the cursor it left, skipping what it had
already sent; a repository sent twice (a crash between sending and marking it) is still
counted once in the run (``incr(once_for=repo)``), its second sync finding everything in
the store.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from syncworker.coord import Coordinator, RunFailure
from syncworker.engine import Mirror, RepoResult

__all__ = [
    "CATALOG_FAILURE",
    "Claim",
    "Step",
    "claim_walk",
    "record_catalog_failure",
    "record_repo",
    "record_repo_lost",
    "walk_page",
]

log = logging.getLogger(__name__)

# The "repository" a failure to list the catalog is filed under in the run's failures.
CATALOG_FAILURE = "(catalog)"

Enqueue = Callable[[str, Sequence[str], str], None]  # registry, repos of a page, run id


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


def record_repo(
    coord: Coordinator, run_id: str, result: RepoResult, *, clear_live: bool = False
) -> None:
    """Count one finished repository into its run, with its failures, in one step;
    ``clear_live``: its worker wrote live counts, which this count replaces."""
    failures = [RunFailure(f.upstream_repo, f.tag, f.reason) for f in result.failures]
    coord.incr(
        run_id,
        once_for=result.upstream_repo,
        failures=failures,
        clear_live=clear_live,
        repos_done=int(result.ok and result.skip_reason is None),
        repos_failed=int(not result.ok),
        repos_skipped=int(result.skip_reason is not None),
        images_copied=len(result.copied),
        images_skipped=len(result.skipped),
        images_failed=len(result.failures),
        blobs_fetched=result.blobs_fetched,
        blobs_linked=result.blobs_linked,
        bytes=result.bytes_copied,
    )


def record_repo_lost(coord: Coordinator, run_id: str, repo: str, reason: str) -> None:
    """A sync_repo that failed for good outside the engine (retries exhausted, time limit):
    the live counts its deliveries may have left go with it."""
    failure = RunFailure(repo, None, reason)
    coord.incr(run_id, once_for=repo, failures=[failure], clear_live=True, repos_failed=1)


def record_catalog_failure(coord: Coordinator, registry: str, run_id: str, reason: str) -> None:
    """The catalog could not be listed: the run keeps what was enqueued and ends with this
    failure, so the next trigger starts a fresh walk."""
    coord.record_failure(run_id, CATALOG_FAILURE, None, reason)
    coord.end_walk(registry, run_id)
