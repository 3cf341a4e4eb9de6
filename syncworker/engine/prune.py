"""What a prune removes from a repository's ``index.json`` (registry option ``prune``).

Given the upstream's complete tag list, an entry goes when its tag is no longer listed,
except a special tag (``sha256-<hex>.sig`` and the like) whose subject is still present;
then untagged referrers whose subject went with it (a signature of a deleted image, and
the signature of that signature). Entries without a subject, such as images synced by
digest, are kept. Blobs stay where they are: ``syncworker gc`` removes what no index
reaches any more.

Every manifest the decision reads must be read: one that is absent or unreadable (a
temporary S3 error, a corrupt file) raises, and nothing is pruned, since a manifest taken
for one without children or subject could drop the signature of an image still tagged.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from syncworker.errors import StoreError, SyncworkerError
from syncworker.filters import expected_children, special_tag_subject
from syncworker.oci import Descriptor, Digest, Manifest, Platform, parse_manifest
from syncworker.store import IndexEntry, Store

__all__ = ["Prune", "plan_prune"]


@dataclass(frozen=True, slots=True)
class Prune:
    """The tags and the untagged digests to remove."""

    tags: list[str] = field(default_factory=list)
    untagged: list[Digest] = field(default_factory=list)
    #: Bytes of the removed trees (manifests and blobs), shared ones included.
    size: int = 0

    @property
    def names(self) -> list[str]:
        return self.tags + [str(d) for d in self.untagged]

    def __bool__(self) -> bool:
        return bool(self.tags or self.untagged)


def plan_prune(
    store: Store,
    repo: str,
    entries: Sequence[IndexEntry],
    listed: Collection[str],
    platforms: Sequence[Platform] = (),
) -> Prune:
    """The prune of ``repo`` (its index ``entries``) against ``listed``, the upstream's
    complete tag list; ``platforms``: the children of an index that ``repo`` holds. Reads
    manifests from the store only when a tag goes; raises StoreError, naming the cause,
    when one it needs cannot be read."""
    gone = [e for e in entries if e.tag is not None and e.tag not in listed]
    if not gone:
        return Prune()
    manifests = _Manifests(store, repo, platforms)
    kept = [e for e in entries if e not in gone]
    while True:  # a kept special tag can keep the subject of another one
        present = manifests.reachable(kept)
        back = [e for e in gone if _subject_of_tag(e) in present]
        if not back:
            break
        kept += back
        gone = [e for e in gone if e not in back]
    orphans: list[IndexEntry] = []
    while True:  # a referrer of a removed referrer goes too
        present = manifests.reachable(kept)
        dropped = [
            e
            for e in kept
            if e.tag is None and (s := manifests.subject(e)) is not None and s not in present
        ]
        if not dropped:
            break
        orphans += dropped
        kept = [e for e in kept if e not in dropped]
    removed = gone + orphans
    return Prune(
        sorted(str(e.tag) for e in gone),
        sorted({e.descriptor.digest for e in orphans}, key=str),
        manifests.tree_bytes([e.descriptor for e in removed]),
    )


def _subject_of_tag(entry: IndexEntry) -> Digest | None:
    return special_tag_subject(entry.tag) if entry.tag is not None else None


class _Manifests:
    """Manifests of one repository read from the store, each once."""

    def __init__(self, store: Store, repo: str, platforms: Sequence[Platform]) -> None:
        self._store = store
        self._repo = repo
        self._platforms = platforms
        self._parsed: dict[Digest, Manifest] = {}

    def get(self, digest: Digest) -> Manifest:
        if digest not in self._parsed:
            try:
                raw = self._store.read_blob(self._repo, digest)
                self._parsed[digest] = parse_manifest(raw, None, digest)
            except SyncworkerError as exc:
                raise StoreError(f"{self._repo}: nothing pruned: {exc}") from exc
        return self._parsed[digest]

    def children(self, index: Manifest) -> list[Descriptor]:
        return expected_children(index, self._platforms)

    def subject(self, entry: IndexEntry) -> Digest | None:
        found = self.get(entry.descriptor.digest)
        return found.subject.digest if found.subject else None

    def tree_bytes(self, descriptors: Sequence[Descriptor]) -> int:
        """Bytes of the trees of ``descriptors`` (manifests), each manifest and blob
        counted once; configs and layers are counted, never read."""
        sizes: dict[Digest, int] = {}
        todo = list(descriptors)
        while todo:
            desc = todo.pop()
            if desc.digest in sizes:
                continue
            sizes[desc.digest] = desc.size
            found = self.get(desc.digest)
            if found.is_index:
                todo += self.children(found)
            else:
                sizes.update((b.digest, b.size) for b in found.blobs)
        return sum(sizes.values())

    def reachable(self, entries: Sequence[IndexEntry]) -> set[Digest]:
        """The digests of ``entries`` and of their indexes' children, recursively; only
        indexes are read."""
        seen: set[Digest] = set()
        todo: list[Descriptor] = [e.descriptor for e in entries]
        while todo:
            desc = todo.pop()
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            if desc.is_index:
                todo += self.children(self.get(desc.digest))
        return seen
