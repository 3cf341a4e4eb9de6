"""Where a walk of a repository reports: what it finds whole, what it writes.

The walk itself (:class:`~syncworker.engine.repo.RepoJob` over tags and referrers,
:class:`~syncworker.engine.images.TreeWalker` over one manifest tree) makes every decision
once: which tags, which children (``expected_children``), how deep, which referrers,
``onlySigned``. A sink supplies the manifests and carries the effects out.
:class:`CopySink` writes them into the store (a sync; with ``trust_present=False``, a
repair); the dry run's :class:`~syncworker.engine.dryrun.PlanSink` keeps them in memory;
the check's :class:`~syncworker.engine.treecheck.CheckSink` reads the trees from the store and
notes what is missing. So a dry run and a real run cannot disagree on what is copied, and
a check expects what a sync stores.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from concurrent.futures import Executor
from typing import Protocol

from syncworker.engine.blobcopy import BlobCopier, BlobStats
from syncworker.engine.plan import blobs_to_copy
from syncworker.engine.results import RepoResult
from syncworker.oci import Digest, Manifest
from syncworker.registry import Deadline, RegistryClient
from syncworker.store import IndexEntry, Store

__all__ = ["CopySink", "Fetched", "Sink", "TreeSink", "UpstreamSink"]

#: A manifest's bytes and what they say, as the registry client returns them.
Fetched = tuple[bytes, Manifest]


class TreeSink(Protocol):
    """Where the walk of a manifest tree into repository ``repo`` of a store reports.
    Every method is safe to call from threads (tags are walked several at a time)."""

    def whole(self, repo: str, digest: Digest) -> bool:
        """Whether the tree of manifest ``digest`` is known whole: the walk stops there."""
        ...

    def fetch(self, repo: str, digest: Digest) -> Fetched | None:
        """Manifest ``digest`` of the tree walked into ``repo``; None if it cannot be had
        and the sink noted why (a check): the walk goes on beside it."""
        ...

    def read_manifest(self, repo: str, digest: Digest) -> bytes:
        """The bytes of a manifest :meth:`whole` answered for, or one put before."""
        ...

    def put_manifest(self, repo: str, digest: Digest, raw: bytes) -> None:
        """Manifest ``digest``, once everything it refers to is in."""
        ...

    def put_blobs(self, repo: str, m: Manifest) -> BlobStats:
        """The config and layers of image manifest ``m``; what that cost."""
        ...


class Sink(TreeSink, Protocol):
    """Where the walk of a repository reports: its trees, then their ``index.json``
    entries."""

    def update_index(self, repo: str, entries: Sequence[IndexEntry]) -> bool:
        """Record ``entries`` in ``repo``'s ``index.json`` (their trees are in)."""
        ...

    def remove_from_index(
        self, repo: str, tags: Collection[str], untagged: Collection[Digest]
    ) -> bool:
        """A prune: remove these entries; whether any was listed."""
        ...

    def new_result(self, registry: str, upstream_repo: str, dest_repo: str) -> RepoResult:
        """The result a walk into this sink fills in."""
        ...


class UpstreamSink:
    """A sink whose manifests come from ``upstream_repo`` through ``client``."""

    def __init__(self, client: RegistryClient, upstream_repo: str) -> None:
        self.client = client
        self.upstream_repo = upstream_repo

    def fetch(self, repo: str, digest: Digest) -> Fetched:
        return self.client.get_manifest(self.upstream_repo, str(digest))


class CopySink(UpstreamSink):
    """Writes into ``store``: blobs through ``blobs`` on ``pool``, then manifests, then
    index entries, in the order the walk gives (children before parents, tags last).
    ``deadline``: the job's, ended if its thread is interrupted waiting for the blobs.
    ``trust_present``: False for a repair, where a manifest found present is fetched and
    walked all the same, since the tree below it is what was found broken; one this sink
    put is whole all the same (it was put after its tree), so trees sharing it get it once."""

    def __init__(
        self,
        client: RegistryClient,
        upstream_repo: str,
        store: Store,
        blobs: BlobCopier,
        pool: Executor,
        deadline: Deadline,
        *,
        trust_present: bool = True,
    ) -> None:
        super().__init__(client, upstream_repo)
        self._store = store
        self._blobs = blobs
        self._pool = pool
        self._deadline = deadline
        self._trust_present = trust_present
        self._put: set[tuple[str, Digest]] = set()

    def whole(self, repo: str, digest: Digest) -> bool:
        if (repo, digest) in self._put:
            return True
        return self._trust_present and self._store.has_manifest(repo, digest)

    def read_manifest(self, repo: str, digest: Digest) -> bytes:
        return self._store.read_blob(repo, digest)

    def put_manifest(self, repo: str, digest: Digest, raw: bytes) -> None:
        self._store.put_manifest(repo, digest, raw)
        self._put.add((repo, digest))

    def put_blobs(self, repo: str, m: Manifest) -> BlobStats:
        # All done before raising, so no copy is still writing when the error surfaces.
        copy, client, upstream_repo = self._blobs.copy, self.client, self.upstream_repo
        with self._deadline.stopping() as futures:
            for blob in blobs_to_copy(m):
                futures.append(self._pool.submit(copy, client, upstream_repo, repo, blob))
        errors = [exc for exc in (f.exception() for f in futures) if exc is not None]
        if errors:
            raise errors[0]
        stats = BlobStats()
        for future in futures:
            stats.add(future.result())
        return stats

    def update_index(self, repo: str, entries: Sequence[IndexEntry]) -> bool:
        return self._store.update_index(repo, entries)

    def remove_from_index(
        self, repo: str, tags: Collection[str], untagged: Collection[Digest]
    ) -> bool:
        return self._store.remove_from_index(repo, tags, untagged)

    def new_result(self, registry: str, upstream_repo: str, dest_repo: str) -> RepoResult:
        return RepoResult(registry, upstream_repo, dest_repo)
