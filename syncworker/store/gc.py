"""Garbage collection of an OCI-layout store: remove the blobs no ``index.json`` reaches.

Per repository, holding the same repository lock as the syncs (Redis when configured, so
the whole cluster's): mark everything its ``index.json`` reaches (the entries, then
recursively each manifest's config, layers and children), then sweep that repository's
blobs. No sync of that repository can run between the two, so none can make a swept blob
reachable again. A blob younger than ``grace`` is spared all the same: a sync that took
the lock before a restart, or one without shared locks, may be about to list it.

Only layout stores (a directory or S3); a registry destination collects its own garbage.
Blobs shared between repositories are copies (S3) or hard links (a directory), each
collected with its repository; on a directory, the bytes of a hard-linked blob are freed
once its last link goes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from syncworker.errors import SyncworkerError
from syncworker.oci import Descriptor, Digest, parse_manifest
from syncworker.store.layout import LayoutStore

__all__ = ["Collected", "RepoLock", "collect"]

log = logging.getLogger(__name__)

#: Holds a repository's sync lock: ``lock(repo)`` is a context manager.
RepoLock = Callable[[str], AbstractContextManager[object]]


@dataclass(frozen=True, slots=True)
class Removed:
    repo: str
    digest: Digest
    size: int


@dataclass(slots=True)
class Collected:
    """What a collection removed (or would have, ``dry_run``), and the repositories it
    left alone, with why."""

    removed: list[Removed] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(r.size for r in self.removed)


def collect(
    store: LayoutStore,
    lock: RepoLock,
    grace: float,
    *,
    dry_run: bool = False,
    on_removed: Callable[[Removed], None] | None = None,
) -> Collected:
    """Collect every repository of ``store``; blobs younger than ``grace`` seconds stay.
    A repository whose index or manifests cannot be read is skipped whole (a blob it
    may reach must not go) and named in the result."""
    done = Collected()
    for repo in store.repositories():
        try:
            with lock(repo):
                removed = _collect_repo(store, repo, grace, dry_run)
        except SyncworkerError as exc:
            done.skipped[repo] = str(exc)
            log.warning("gc: %s skipped: %s", repo, exc)
            continue
        for item in removed:
            if on_removed is not None:
                on_removed(item)
        done.removed += removed
    return done


def _collect_repo(store: LayoutStore, repo: str, grace: float, dry_run: bool) -> list[Removed]:
    reached = _mark(store, repo, (e.descriptor for e in store.index(repo)))
    garbage = [
        Removed(repo, digest, size)
        for digest, size, age in sorted(store.blob_ages(repo), key=lambda b: str(b[0]))
        if digest not in reached and age >= grace
    ]
    if not dry_run:
        for item in garbage:
            store.delete_blob(repo, item.digest)
    return garbage


def _mark(store: LayoutStore, repo: str, roots: Iterable[Descriptor]) -> set[Digest]:
    """Every digest reachable from ``roots`` (manifests) in ``repo``. A manifest that is
    absent or unreadable raises: its blobs cannot be known, so nothing of the repository
    goes."""
    reached: set[Digest] = set()
    manifests = list(roots)
    while manifests:
        desc = manifests.pop()
        if desc.digest in reached:
            continue
        reached.add(desc.digest)
        manifest = parse_manifest(store.read_blob(repo, desc.digest), None, desc.digest)
        if manifest.is_index:
            manifests += manifest.children
        else:
            reached.update(blob.digest for blob in manifest.blobs)
    return reached
