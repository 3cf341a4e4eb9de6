"""Plan one repository's sync without writing anything: the tags that would be copied,
pruned or left, and the bytes of blobs to fetch.

Only the requests that say what a tag is are made: the tag list, a ``HEAD`` per tag the
store has, a manifest ``GET`` per tag (and index child) it lacks. Never a blob ``GET``, a
referrers listing or a store write. Blobs are counted once per repository, and those the
store already holds (in any repository) are free, as a real run would link them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from syncworker.engine.plan import (
    blobs_to_copy,
    plan_tags,
    skip_reason,
    valid_tags,
)
from syncworker.engine.prune import plan_prune
from syncworker.engine.results import Failure, RepoResult
from syncworker.errors import ContentError, SyncworkerError
from syncworker.filters import ContentRules, expected_children
from syncworker.oci import Descriptor, Digest, Platform
from syncworker.registry import RegistryClient
from syncworker.store import Store

__all__ = ["RepoPlan", "RepoPlanner"]

# As deep as a real copy follows indexes of indexes.
MAX_DEPTH = 8


@dataclass(slots=True)
class RepoPlan(RepoResult):
    """A dry run's answer: ``copied`` would be copied (``fetch_bytes`` per tag: the bytes
    of its blobs to fetch), ``skipped`` left as they are, ``pruned`` removed;
    ``bytes_copied`` and ``blobs_fetched`` are the repository's totals."""

    fetch_bytes: dict[str, int] = field(default_factory=dict)


@dataclass
class RepoPlanner:
    """Plans ``upstream_repo`` (on ``registry``) into ``dest_repo`` of ``store``."""

    client: RegistryClient
    store: Store
    registry: str
    upstream_repo: str
    dest_repo: str
    platforms: Sequence[Platform] = ()
    prune: bool = False
    tag_concurrency: int = 4
    catalogued: bool = False  # as RepoJob's: a catalog entry without tags is skipped
    plan: RepoPlan = field(init=False)
    _stored: dict[str, Digest] = field(init=False, default_factory=dict)
    _counted: set[Digest] = field(init=False, default_factory=set)
    _present: set[Digest] = field(init=False, default_factory=set)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.plan = RepoPlan(self.registry, self.upstream_repo, self.dest_repo)

    def run(self, rules: ContentRules) -> RepoPlan:
        try:
            listed = valid_tags(self.client.tags(self.upstream_repo), self._fail)
            entries = self.store.index(self.dest_repo)
        except SyncworkerError as exc:
            self.plan.skip_reason = skip_reason(exc, self.catalogued)
            if self.plan.skip_reason is None:
                self._fail(None, exc)
            return self.plan
        self._stored = {e.tag: e.descriptor.digest for e in entries if e.tag}
        tags = plan_tags(listed, rules.filter_tags(self.upstream_repo, listed))
        with ThreadPoolExecutor(self.tag_concurrency, thread_name_prefix="plan") as pool:
            list(pool.map(self._plan_tag, tags.ordinary))
            # Special tags of images that are, or would be, mirrored (one level: a
            # signature on an SBOM shows in the next run's plan).
            special = sorted(t for t, subject in tags.special.items() if subject in self._present)
            list(pool.map(self._plan_tag, special))
        if self.prune:
            try:
                prune = plan_prune(self.store, self.dest_repo, entries, set(listed), self.platforms)
            except SyncworkerError as exc:
                self._fail(None, exc)
            else:
                self.plan.pruned, self.plan.pruned_bytes = prune.names, prune.size
        self.plan.copied.sort()
        self.plan.skipped.sort()
        return self.plan

    def _plan_tag(self, tag: str) -> None:
        try:
            if tag in self._stored:
                desc = self.client.head_manifest(self.upstream_repo, tag)
                if desc.digest == self._stored[tag]:
                    with self._lock:
                        self._present.add(desc.digest)
                        self.plan.skipped.append(tag)
                    return
            size = self._tree_bytes(tag, None, 0)
        except SyncworkerError as exc:
            self._fail(tag, exc)
            return
        with self._lock:
            self.plan.copied.append(tag)
            self.plan.fetch_bytes[tag] = size
            self.plan.bytes_copied += size

    def _tree_bytes(self, ref: str, desc: Descriptor | None, depth: int) -> int:
        """Bytes of the blobs of ``ref``'s tree that the store lacks; a manifest the store
        has means its whole tree is there."""
        if desc is not None and self.store.has_manifest(self.dest_repo, desc.digest):
            return 0
        if depth > MAX_DEPTH:
            raise ContentError(f"manifest {ref} is nested more than {MAX_DEPTH} deep")
        _, manifest = self.client.get_manifest(self.upstream_repo, ref)
        with self._lock:
            self._present.add(manifest.digest)
        if manifest.is_index:
            children = expected_children(manifest, self.platforms)
            return sum(self._tree_bytes(str(c.digest), c, depth + 1) for c in children)
        return sum(b.size for b in blobs_to_copy(manifest) if self._to_fetch(b.digest))

    def _to_fetch(self, digest: Digest) -> bool:
        with self._lock:
            if digest in self._counted:
                return False
            self._counted.add(digest)
        if self.store.find_blob(digest) is not None:
            return False
        with self._lock:
            self.plan.blobs_fetched += 1
        return True

    def _fail(self, tag: str | None, exc: SyncworkerError) -> None:
        with self._lock:
            self.plan.failures.append(Failure(self.registry, self.upstream_repo, tag, str(exc)))
