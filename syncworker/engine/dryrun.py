"""A sync planned without writing: the repository walk of a real run
(:class:`~syncworker.engine.repo.RepoJob`) into a sink that keeps its effects in memory.

The same decisions as a real run, made by the same code: which tags, which children, how
deep, which referrers and signatures (``onlySigned``), which special tags follow. Only the
requests that say what would be copied are made: the tag list, a ``HEAD`` per tag the
store has, a manifest ``GET`` per manifest it lacks, and the referrers listings a real run
makes. Never a blob ``GET`` or a store write. Blobs are counted once per repository, and
those the store already holds (in any repository) are free, as a real run would link them.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from syncworker.engine.blobcopy import BlobStats
from syncworker.engine.plan import blobs_to_copy
from syncworker.engine.results import RepoResult
from syncworker.engine.sinks import UpstreamSink
from syncworker.oci import Digest, Manifest
from syncworker.registry import RegistryClient
from syncworker.store import IndexEntry, Store

__all__ = ["PlanSink", "RepoPlan"]


@dataclass(slots=True)
class RepoPlan(RepoResult):
    """A dry run's answer: ``copied`` would be copied (``fetch_bytes`` per name: the bytes
    of its blobs to fetch), ``skipped`` left as they are, ``pruned`` removed;
    ``bytes_copied`` and ``blobs_fetched`` are the repository's totals."""

    fetch_bytes: dict[str, int] = field(default_factory=dict)

    def add_copy(self, name: str, stats: BlobStats) -> None:
        super(RepoPlan, self).add_copy(name, stats)
        self.fetch_bytes[name] = stats.bytes


class PlanSink(UpstreamSink):
    """Reads ``store`` and writes nothing to it: manifests a real run would put are kept
    here (so the walk stops at them as it would at stored ones), blobs are counted."""

    def __init__(self, client: RegistryClient, upstream_repo: str, store: Store) -> None:
        super().__init__(client, upstream_repo)
        self._store = store
        self._planned: dict[Digest, bytes] = {}
        self._counted: set[Digest] = set()
        self._lock = threading.Lock()

    def whole(self, repo: str, digest: Digest) -> bool:
        with self._lock:
            if digest in self._planned:
                return True
        return self._store.has_manifest(repo, digest)

    def read_manifest(self, repo: str, digest: Digest) -> bytes:
        with self._lock:
            raw = self._planned.get(digest)
        return raw if raw is not None else self._store.read_blob(repo, digest)

    def put_manifest(self, repo: str, digest: Digest, raw: bytes) -> None:
        with self._lock:
            self._planned[digest] = raw

    def put_blobs(self, repo: str, m: Manifest) -> BlobStats:
        stats = BlobStats()
        for blob in blobs_to_copy(m):
            with self._lock:
                if blob.digest in self._counted:
                    continue
                self._counted.add(blob.digest)
            if self._store.find_blob(blob.digest) is None:
                stats.fetched += 1
                stats.bytes += blob.size
        return stats

    def update_index(self, repo: str, entries: Sequence[IndexEntry]) -> bool:
        return False

    def remove_from_index(
        self, repo: str, tags: Collection[str], untagged: Collection[Digest]
    ) -> bool:
        return bool(tags or untagged)

    def new_result(self, registry: str, upstream_repo: str, dest_repo: str) -> RepoResult:
        return RepoPlan(registry, upstream_repo, dest_repo)
