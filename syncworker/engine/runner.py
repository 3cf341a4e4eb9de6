"""Run whole registries in one process: catalog pages in, ``sync_repo`` on a thread pool.

This is ``syncworker sync``; the Celery deployment does the same walk as tasks instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from syncworker.engine.mirror import Mirror
from syncworker.engine.results import Failure, RepoResult
from syncworker.errors import SyncworkerError

__all__ = ["RunSummary", "run_registries"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RunSummary:
    results: list[RepoResult] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    elapsed: float = 0.0

    def add(self, result: RepoResult) -> None:
        self.results.append(result)
        self.failures.extend(result.failures)

    @property
    def repos_skipped(self) -> list[RepoResult]:
        """Repositories left alone without failing (``RepoResult.skip_reason``)."""
        return [r for r in self.results if r.skip_reason is not None]

    @property
    def copied(self) -> int:
        return sum(len(r.copied) for r in self.results)

    @property
    def skipped(self) -> int:
        return sum(len(r.skipped) for r in self.results)

    @property
    def bytes_copied(self) -> int:
        return sum(r.bytes_copied for r in self.results)

    @property
    def blobs_fetched(self) -> int:
        return sum(r.blobs_fetched for r in self.results)


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
    instead (``Mirror.plan_repo``), writing nothing."""
    work = partial(mirror.plan_repo if dry_run else mirror.sync_repo, listed=True)
    started = time.monotonic()
    summary = RunSummary()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="repo") as pool:
        futures: list[tuple[str, str, Future[RepoResult]]] = []
        for registry in registries:
            for page, complete in _walk(mirror, registry, summary):
                sent = len(futures)
                for upstream_repo in page:
                    future = pool.submit(work, registry, upstream_repo)
                    if on_repo_done is not None:
                        future.add_done_callback(
                            partial(_report, on_repo_done, registry, upstream_repo)
                        )
                    futures.append((registry, upstream_repo, future))
                mirror.events.repos_listed(registry, len(futures) - sent, complete)
        for registry, upstream_repo, future in futures:
            summary.add(_outcome(registry, upstream_repo, future))
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
            summary.failures.append(Failure(registry, "(catalog)", None, str(exc)))
            yield [], True  # what was listed is all there will be
            return
        yield page, last is None
        if last is None:
            return
        visited.add(last)


def _report(
    callback: Callable[[RepoResult], None],
    registry: str,
    upstream_repo: str,
    future: Future[RepoResult],
) -> None:
    callback(_outcome(registry, upstream_repo, future))


def _outcome(registry: str, upstream_repo: str, future: Future[RepoResult]) -> RepoResult:
    try:
        return future.result()
    except Exception as exc:  # a bug must not hide the other repositories' results
        log.exception("unexpected error mirroring %s/%s", registry, upstream_repo)
        result = RepoResult(registry, upstream_repo, None)
        result.failures.append(
            Failure(registry, upstream_repo, None, f"{type(exc).__name__}: {exc}")
        )
        return result
