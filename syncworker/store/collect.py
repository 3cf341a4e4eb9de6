"""Garbage collection of an OCI-layout store: remove the blobs no kept manifest reaches.

It keeps the store's invariant (docs/ARCHITECTURE.md, "Crash safety"): a manifest present
has its whole tree. Per repository (every one holding a layout file, also one whose first
sync ended before it wrote ``index.json``), holding the same locks as the syncs:

1. Mark everything ``index.json`` reaches: the entries, then each manifest's config,
   layers and children. An entry or a child the repository is expected to hold
   (``expected``; children a ``platforms`` filter left out are never stored) that is absent
   or unreadable fails the repository: its blobs cannot be known, nothing goes. A child
   not expected is kept when present, so a collection under a narrower ``platforms``
   than the sync's breaks no tree; so is the tree of a layer that is itself a manifest.
2. Spare what is younger than ``grace`` (a sync without shared locks, or one that took the
   lock before a restart, may be about to list it), and mark from every manifest spared:
   a child written by a sync that failed before its index keeps its config and layers,
   however old they are, since the next sync will trust it.
3. Delete the rest parents first (an index before its children, a manifest before its
   config and layers), so a collection killed or failing part-way leaves only blobs no
   manifest refers to, never a manifest without its tree. Before each deletion the lock
   is asked whether it is still ours (``Hold.ensure``): a Redis lock that expired under a
   long collection stops it there, since a sync may now reuse what it would delete.

Only layout stores (a directory or S3); a registry destination collects its own garbage.
Blobs shared between repositories are copies (S3) or hard links (a directory), each
collected with its repository; on a directory, the bytes of a hard-linked blob are freed
once its last link goes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from syncworker.errors import SyncworkerError
from syncworker.oci import MAX_MANIFEST_BYTES, Descriptor, Digest, Manifest, parse_manifest
from syncworker.oci.mediatypes import MANIFEST_TYPES
from syncworker.store.layout import LayoutStore

__all__ = ["Collected", "Expected", "Hold", "RepoLock", "Removed", "collect"]

log = logging.getLogger(__name__)

# Bytes read of a blob named as a config or layer to tell whether it may be a manifest.
PEEK_BYTES = 64


class Hold(Protocol):
    """What holding a repository yields (the engine's ``RepoHold``)."""

    def ensure(self) -> None:
        """Raise LockLost if the hold is no longer ours."""
        ...


#: Holds a repository against syncs: ``lock(repo)`` is a context manager, yielding a
#: :class:`Hold` to ask before each deletion (None: a hold that cannot be lost).
RepoLock = Callable[[str], AbstractContextManager[Hold | None]]
#: ``(repo, index) -> the children of index that repo is expected to hold``.
Expected = Callable[[str, Manifest], Sequence[Descriptor]]


def _every_child(repo: str, index: Manifest) -> Sequence[Descriptor]:
    return index.children


@dataclass(frozen=True, slots=True)
class Removed:
    repo: str
    digest: Digest
    size: int


@dataclass(slots=True)
class Collected:
    """What a collection removed (or would have, ``dry_run``), and the repositories it
    left alone or could not finish, with why. A repository that failed part-way has what
    it removed before the failure counted here. ``spared``: the blobs no ``index.json``
    reaches that ``grace`` kept (young, or in the tree of a young manifest)."""

    removed: list[Removed] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    spared: list[Removed] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(r.size for r in self.removed)


def collect(
    store: LayoutStore,
    lock: RepoLock,
    grace: float,
    *,
    expected: Expected = _every_child,
    dry_run: bool = False,
    on_removed: Callable[[Removed], None] | None = None,
) -> Collected:
    """Collect every repository of ``store``; blobs younger than ``grace`` seconds stay,
    with the trees of the manifests among them."""
    done = Collected()

    def removed(item: Removed) -> None:
        done.removed.append(item)
        if on_removed is not None:
            on_removed(item)

    for repo in store.layouts():
        try:
            with lock(repo) as hold:
                spared = _Repo(store, repo, expected).collect(grace, dry_run, removed, hold)
                done.spared += spared
        except SyncworkerError as exc:
            done.skipped[repo] = str(exc)
            log.warning("gc: %s skipped: %s", repo, exc)
    return done


class _Repo:
    """One repository's collection: the manifests read so far, and what is marked."""

    def __init__(self, store: LayoutStore, repo: str, expected: Expected) -> None:
        self._store = store
        self._repo = repo
        self._expected = expected
        self._manifests: dict[Digest, Manifest | None] = {}
        self._listed: set[Digest] = set()
        # Digests some manifest read so far names as its config or a layer.
        self._blobs: set[Digest] = set()
        self.reached: set[Digest] = set()

    def collect(
        self,
        grace: float,
        dry_run: bool,
        removed: Callable[[Removed], None],
        hold: Hold | None = None,
    ) -> list[Removed]:
        """Remove the garbage; return the unreached blobs that ``grace`` spared."""
        # Listed first: marking keeps the children present that no filter expects.
        blobs = self._store.blob_ages(self._repo)
        self._listed = {digest for digest, _, _ in blobs}
        self._mark(e.descriptor.digest for e in self._store.index(self._repo))
        unreached = sorted((b for b in blobs if b[0] not in self.reached), key=lambda b: b[1])
        young = (d for d, size, age in unreached if age < grace and self._manifest(d, size))
        self._mark(young, spared=True)
        garbage = {d: size for d, size, age in unreached if d not in self.reached and age >= grace}
        for digest in self._parents_first(garbage):
            if not dry_run:
                if hold is not None:
                    hold.ensure()
                self._store.delete_blob(self._repo, digest)
            removed(Removed(self._repo, digest, garbage[digest]))
        return [Removed(self._repo, d, size) for d, size, _ in unreached if d not in garbage]

    def _mark(self, roots: Iterable[Digest], *, spared: bool = False) -> None:
        """Mark ``roots`` (manifests) and their trees. A manifest that is absent or
        unreadable raises (the blobs it needs cannot be known), except an absent child of
        a ``spared`` manifest, which has no tree to keep."""
        todo = [(digest, spared) for digest in roots]  # (manifest, may it be absent?)
        while todo:
            digest, optional = todo.pop()
            if digest in self.reached:
                continue
            if optional and digest not in self._listed:
                continue
            self.reached.add(digest)
            manifest = self._read(digest)
            if manifest.is_index:
                expected = {c.digest for c in self._expected(self._repo, manifest)}
                # Every child present is kept, expected or not: gc given a narrower
                # ``platforms`` than the sync that stored the index must not break its tree.
                todo += (
                    (c.digest, optional or c.digest not in expected) for c in manifest.children
                )
            else:
                for blob in manifest.blobs:
                    # A layer that is a manifest (an artifact carrying an image) keeps its
                    # own tree too; one only said to be one is a plain blob.
                    nested = None
                    if blob.media_type in MANIFEST_TYPES and blob.digest in self._listed:
                        nested = self._manifest(blob.digest, blob.size)
                    if nested is None:
                        self.reached.add(blob.digest)
                    else:
                        todo.append((blob.digest, optional))

    def _read(self, digest: Digest) -> Manifest:
        found = self._manifests.get(digest)
        if found is None:
            found = self._parsed(digest, self._store.read_blob(self._repo, digest))
        return found

    def _manifest(self, digest: Digest, size: int) -> Manifest | None:
        """The blob ``digest`` parsed, if it is a manifest; None for a config, a layer, or
        bytes that are no manifest. A read that fails raises: what it is stays unknown."""
        if digest not in self._manifests:
            parsed = None
            # A config or layer of a manifest already read is read whole only if its first
            # bytes are JSON: no download of the layers that a manifest, smaller and so read
            # first, names as such, and still no manifest named as a layer (an artifact's
            # payload) taken for a blob, its tree then deleted before it.
            if size <= MAX_MANIFEST_BYTES and (digest not in self._blobs or self._json(digest)):
                raw = self._store.read_blob(self._repo, digest)
                if _is_json(raw):
                    try:
                        parsed = self._parsed(digest, raw)
                    except SyncworkerError:
                        parsed = None  # JSON, but not a manifest (a config)
            self._manifests[digest] = parsed
        return self._manifests[digest]

    def _json(self, digest: Digest) -> bool:
        """Whether the blob's first bytes (one ranged read) may begin a JSON object."""
        with self._store.open_blob_range(self._repo, digest, 0, PEEK_BYTES) as chunks:
            head = b"".join(chunks)
        return _is_json(head) or not head.strip()  # all blank so far: cannot tell

    def _parsed(self, digest: Digest, raw: bytes) -> Manifest:
        manifest = self._manifests[digest] = parse_manifest(raw, None, digest)
        self._blobs.update(b.digest for b in manifest.blobs)
        return manifest

    def _parents_first(self, garbage: dict[Digest, int]) -> list[Digest]:
        """``garbage`` ordered so that whatever refers to a blob comes before it: each
        digest once every manifest of ``garbage`` that lists it is placed (the references
        between manifests form no cycle: a digest is computed from the bytes that list
        others)."""
        children: dict[Digest, list[Digest]] = {}
        parents = dict.fromkeys(garbage, 0)
        for digest, size in sorted(garbage.items(), key=lambda item: item[1]):
            manifest = self._manifest(digest, size)
            listed = {d.digest for d in manifest.children + manifest.blobs} if manifest else set()
            children[digest] = sorted((d for d in listed if d in garbage), key=str)
            for child in children[digest]:
                parents[child] += 1
        ready = sorted((d for d, n in parents.items() if n == 0), key=str, reverse=True)
        order = []
        while ready:
            digest = ready.pop()
            order.append(digest)
            for child in children[digest]:
                parents[child] -= 1
                if parents[child] == 0:
                    ready.append(child)
        return order


def _is_json(raw: bytes) -> bool:
    """Whether ``raw`` begins as a JSON object does, as every manifest does."""
    return raw.lstrip()[:1] == b"{"
