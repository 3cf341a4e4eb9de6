"""Run whole registries in one process: catalog pages in, ``sync_repo`` on a thread pool.

This is ``syncworker sync``; the Celery deployment does the same walk as tasks instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

from syncworker.engine.mirror import Mirror
from syncworker.engine.results import Failure, RepoResult
from syncworker.errors import SyncworkerError

__all__ = ["AHEAD_PER_THREAD", "Deferred", "RunSummary", "run_registries"]

log = logging.getLogger(__name__)


# Repositories handed to the thread pool and not finished, per thread: enough that a
# thread never waits for the walk, few enough that the run holds a page of names at most.
AHEAD_PER_THREAD = 2


class Deferred(NamedTuple):
    """What one registry's pull budget held back: tags, and when it refills (Unix time)."""

    tags: int
    refill_at: float


@dataclass(slots=True)
class RunSummary:
    """What a run did: counts, and by name only what a person reads about (failures, and
    the repositories skipped or pruned; with ``keep_all``, every result: a dry run prints
    each plan). A repository that synced costs nothing past its counts, so a catalog of a
    million holds no more memory than one of a thousand."""

    repos: int = 0
    repos_failed: int = 0
    copied: int = 0
    skipped: int = 0
    bytes_copied: int = 0
    blobs_fetched: int = 0
    failures: list[Failure] = field(default_factory=list)
    #: The results named in the output: skipped or pruned repositories (every one with
    #: ``keep_all``), in the order they finished.
    noted: list[RepoResult] = field(default_factory=list)
    elapsed: float = 0.0
    keep_all: bool = False
    #: Per registry, the tags deferred for its pull budget and when it refills (the
    #: latest such time).
    deferred: dict[str, Deferred] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, result: RepoResult) -> None:
        """Count ``result`` (from any thread); keep it only if it is to be named."""
        with self._guard:
            self.repos += 1
            self.repos_failed += not result.ok
            self.copied += len(result.copied)
            self.skipped += len(result.skipped)
            self.bytes_copied += result.bytes_copied
            self.blobs_fetched += result.blobs_fetched
            self.failures.extend(result.failures)
            if result.deferred and result.refill_at is not None:
                before = self.deferred.get(result.registry, Deferred(0, result.refill_at))
                self.deferred[result.registry] = Deferred(
                    before.tags + len(result.deferred), max(before.refill_at, result.refill_at)
                )
            if self.keep_all or result.pruned or result.skip_reason is not None:
                self.noted.append(result)

    def fail(self, failure: Failure) -> None:
        """A failure outside any repository's sync: the catalog's."""
        with self._guard:
            self.failures.append(failure)

    @property
    def repos_skipped(self) -> list[RepoResult]:
        """Repositories left alone without failing (``RepoResult.skip_reason``)."""
        return [r for r in self.noted if r.skip_reason is not None]


def run_registries(
    mirror: Mirror,
    registries: Sequence[str],
    concurrency: int,
    on_repo_done: Callable[[RepoResult], None] | None = None,
    *,
    dry_run: bool = False,
) -> RunSummary:
    """Mirror every repository of ``registries``, ``concurrency`` repositories at a time.
    One repository's failure never stops the others. ``dry_run``: plan each repository
    instead (``Mirror.plan_repo``), writing nothing.

    The catalog is read a page at a time as the threads need it: at most
    ``AHEAD_PER_THREAD`` repositories per thread wait for one, and each finished one is
    counted into the summary and dropped, so memory stays flat in the catalog's size."""
    work = partial(mirror.plan_repo if dry_run else mirror.sync_repo, listed=True)
    started = time.monotonic()
    summary = RunSummary(keep_all=dry_run)
    room = threading.BoundedSemaphore(concurrency * AHEAD_PER_THREAD)

    def finished(registry: str, upstream_repo: str, future: Future[RepoResult]) -> None:
        try:
            result = _outcome(registry, upstream_repo, future)
            summary.add(result)
            if on_repo_done is not None:
                on_repo_done(result)
        finally:
            room.release()

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="repo") as pool:
        for registry in registries:
            for page, complete in _walk(mirror, registry, summary):
                sent = 0
                for upstream_repo in page:
                    room.acquire()
                    future = pool.submit(work, registry, upstream_repo)
                    future.add_done_callback(partial(finished, registry, upstream_repo))
                    sent += 1
                mirror.events.repos_listed(registry, sent, complete)
    summary.failures.sort(key=lambda f: (f.registry, f.upstream_repo, f.tag or ""))
    summary.elapsed = time.monotonic() - started
    return summary


def _walk(mirror: Mirror, registry: str, summary: RunSummary) -> Iterator[tuple[list[str], bool]]:
    """Repositories page by page, so copying starts before a long catalog is read; with
    whether the page is the last. Every cursor used is passed back to ``list_page``, which
    refuses a page that goes back."""
    last: str | None = None
    visited: set[str] = set()
    while True:
        try:
            page, last = mirror.list_page(registry, last, visited=visited)
        except SyncworkerError as exc:
            summary.fail(Failure(registry, "(catalog)", None, str(exc)))
            yield [], True  # what was listed is all there will be
            return
        yield page, last is None
        if last is None:
            return
        visited.add(last)


def _outcome(registry: str, upstream_repo: str, future: Future[RepoResult]) -> RepoResult:
    """The repository's result, or a failure naming what ended its thread. Every class of
    exception counts, ``BaseException`` too (a ``SystemExit`` or ``GeneratorExit`` raised in
    a repository's thread): one left uncaught here would kill the pool's thread and drop the
    repository from the run. The exception is read, not raised, so a ``KeyboardInterrupt``
    of the main thread arriving meanwhile still stops the run."""
    exc = future.exception()
    if exc is None:
        return future.result()
    if isinstance(exc, SyncworkerError):  # its lock could not be taken: Redis, or the store's
        log.warning("%s/%s: not mirrored: %s", registry, upstream_repo, exc)
        reason = str(exc)
    else:  # a bug must not hide the other repositories' results
        log.error("unexpected error mirroring %s/%s", registry, upstream_repo, exc_info=exc)
        reason = f"{type(exc).__name__}: {exc}"
    result = RepoResult(registry, upstream_repo, None)
    result.failures.append(Failure(registry, upstream_repo, None, reason))
    return result
