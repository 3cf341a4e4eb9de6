"""``syncworker check`` of one repository (check, repair if asked, check again), and of a
whole store in one process on a thread pool. A cluster runs the first through its workers
(``syncworker.check_repo``), one task per repository."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from syncworker.engine.mirror import Mirror
from syncworker.engine.results import Failure, RepoResult
from syncworker.engine.treecheck import RepoCheck, TreeChecker
from syncworker.errors import LockBusy
from syncworker.waits import REPAIR_REPO_WAIT

__all__ = ["CheckOutcome", "check_one", "check_repos", "checker", "store_repos"]

# Blobs hashed at once: hashing is CPU-bound and releases the GIL, so one per core (and a
# few more to hide the reads of a remote store).
HASH_THREADS = (os.cpu_count() or 1) + 2


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """What the check of one repository found, what a repair did, and the check after it."""

    found: RepoCheck
    repair: RepoResult | None = None
    after: RepoCheck | None = None

    @property
    def final(self) -> RepoCheck:
        return self.after or self.found


@contextmanager
def checker(mirror: Mirror, *, deep: bool, threads: int = HASH_THREADS) -> Iterator[TreeChecker]:
    """A checker of ``mirror``'s store with a blob pool of its own."""
    with ThreadPoolExecutor(threads, thread_name_prefix="check") as pool:
        yield TreeChecker(mirror.store, mirror.platforms_of, pool, deep=deep)


def check_one(
    mirror: Mirror,
    trees: TreeChecker,
    repo: str,
    *,
    repair: bool,
    lock_wait: float | None = REPAIR_REPO_WAIT,
    raise_busy: bool = False,
) -> CheckOutcome:
    """Check ``repo``; with ``repair``, copy what is broken again and check once more. A
    sync or gc holding the repository past ``lock_wait`` leaves it unrepaired, or with
    ``raise_busy`` raises :class:`~syncworker.errors.LockBusy` (a worker retries later)."""
    found = trees.check_repo(repo)
    if not repair or not found.broken:
        return CheckOutcome(found)
    try:
        fixed = mirror.repair(repo, found.broken, lock_wait=lock_wait)
    except LockBusy as exc:
        if raise_busy:
            raise
        fixed = RepoResult("", repo, repo)
        fixed.failures.append(Failure("", repo, None, f"{repo}: not repaired: {exc}"))
        return CheckOutcome(found, fixed, found)
    return CheckOutcome(found, fixed, trees.check_repo(repo))


def store_repos(mirror: Mirror, registries: Sequence[str] | None = None) -> list[str]:
    """The store's repositories, or those the named registries mirror into."""
    repos = mirror.store.repositories()
    if not registries:
        return repos
    wanted = set(registries)
    return [repo for repo in repos if any(s.registry in wanted for s in mirror.sources(repo))]


def check_repos(
    mirror: Mirror,
    repos: Sequence[str],
    *,
    deep: bool,
    repair: bool,
    concurrency: int,
    on_done: Callable[[CheckOutcome], None] | None = None,
) -> list[CheckOutcome]:
    """Every repository of ``repos``, ``concurrency`` at a time, in this process."""

    def one(repo: str) -> CheckOutcome:
        outcome = check_one(mirror, trees, repo, repair=repair)
        if on_done is not None:
            on_done(outcome)
        return outcome

    with (
        checker(mirror, deep=deep) as trees,
        ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="check-repo") as pool,
    ):
        return list(pool.map(one, repos))
