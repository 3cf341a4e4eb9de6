"""Whether every tree a repository lists is whole: ``syncworker check``.

For each tree a repository's ``index.json`` lists (tags, and untagged entries: referrers,
images synced by digest), walk it as the sync wrote it, once however many entries list it,
with the sync's own walk (:class:`TreeWalker`) into a :class:`CheckSink`: each manifest
present and hashing to its digest, each child an index expects (``expected_children``:
those its platforms keep), each config and layer present at its declared size, and with
``deep`` hashing to its digest. A tree the sync would have refused (nested past
``MAX_DEPTH``, a cycle) makes the repository's ``error``. Manifests several trees share
are read once per repository, and blobs looked at once, on a pool, so a deep check of a
large repository hashes on every core (``hashlib`` releases the GIL while it hashes a
large chunk).

Nothing is written: the repair, which needs the upstream, is :mod:`syncworker.engine.repair`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Literal

from syncworker.engine.blobcopy import BlobStats
from syncworker.engine.images import TreeWalker
from syncworker.engine.plan import as_of_bytes, blobs_to_copy
from syncworker.engine.sinks import Fetched
from syncworker.errors import ContentError, StoreError, SyncworkerError
from syncworker.filters import expected_children
from syncworker.oci import Descriptor, Digest, Manifest, Platform, parse_manifest
from syncworker.store import IndexEntry, Store
from syncworker.store.protocol import Readable

# ``expected_children`` is passed on for the commands, which may not import ``filters``.
__all__ = [
    "BrokenTree",
    "CheckSink",
    "Damage",
    "RepoCheck",
    "TreeChecker",
    "expected_children",
    "hashes_to_its_name",
]

Problem = Literal["absent", "corrupt"]


@dataclass(frozen=True, slots=True)
class Damage:
    """One object of a tree that is missing, or whose bytes are not what its name says."""

    digest: Digest
    problem: Problem
    kind: Literal["manifest", "blob"]

    def __str__(self) -> str:
        return f"{self.kind} {self.digest} {self.problem}"


@dataclass(frozen=True, slots=True)
class BrokenTree:
    """A tree of ``repo`` that is not whole, with the ``index.json`` entries listing it:
    one digest may be listed under several tags, and untagged beside them (synced by
    digest, then tagged). Tagged entries come first."""

    repo: str
    entries: tuple[IndexEntry, ...]
    damage: tuple[Damage, ...]

    @property
    def descriptor(self) -> Descriptor:
        return self.entries[0].descriptor

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(e.tag for e in self.entries if e.tag is not None)

    @property
    def tag_field(self) -> str | None:
        """Its tags as one failure's ``tag``; None when it is listed untagged only."""
        return ", ".join(self.tags) or None

    @property
    def name(self) -> str:
        """Each entry as ``repo:tag``, or ``repo@digest`` when untagged (a referrer, an
        image synced by digest)."""
        untagged = len(self.tags) < len(self.entries)
        names = [f"{self.repo}:{tag}" for tag in self.tags]
        return ", ".join(names + [f"{self.repo}@{self.descriptor.digest}"] * untagged)

    def __str__(self) -> str:
        found = "; ".join(str(d) for d in self.damage)
        return f"{self.name} ({self.descriptor.digest}): {found}"


@dataclass(slots=True)
class RepoCheck:
    """What checking one repository found. ``error``: it could not be checked at all."""

    repo: str
    trees: int = 0
    blobs: int = 0
    bytes_hashed: int = 0
    broken: list[BrokenTree] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.broken and self.error is None


class CheckSink:
    """One tree of a repository as stored, for :class:`TreeWalker`: nothing present is
    trusted and nothing is written; what is absent or corrupt is noted in ``damage``, the
    blobs the tree needs gathered in ``blobs``. ``read`` holds each manifest read (or the
    damage found instead) for the whole repository, so trees sharing one read it once."""

    def __init__(self, store: Store, read: dict[Digest, Fetched | Damage]) -> None:
        self._store = store
        self._read = read
        self.damage: list[Damage] = []
        self.blobs: dict[Digest, Descriptor] = {}

    def whole(self, repo: str, digest: Digest) -> bool:
        return False

    def fetch(self, repo: str, digest: Digest) -> Fetched | None:
        found = self._read.get(digest)
        if found is None:
            found = self._read[digest] = self._manifest(repo, digest)
        if isinstance(found, Damage):
            self.damage.append(found)
            return None
        return found

    def read_manifest(self, repo: str, digest: Digest) -> bytes:
        return self._store.read_blob(repo, digest)

    def put_manifest(self, repo: str, digest: Digest, raw: bytes) -> None:
        """Nothing is written: the manifest was read from the store."""

    def put_blobs(self, repo: str, m: Manifest) -> BlobStats:
        self.blobs.update((b.digest, b) for b in blobs_to_copy(m))
        return BlobStats()

    def _manifest(self, repo: str, digest: Digest) -> Fetched | Damage:
        if not self._store.has_manifest(repo, digest):
            return Damage(digest, "absent", "manifest")
        raw = self._store.read_blob(repo, digest)
        try:
            return raw, parse_manifest(raw, None, digest)
        except ContentError:  # bytes that do not hash to the digest, or no manifest at all
            return Damage(digest, "corrupt", "manifest")


class TreeChecker:
    """Checks repositories of ``store``; ``platforms(repo)`` gives the platforms its source
    keeps; ``pool`` looks at blobs (a pool of its own: the caller may run repositories on
    another)."""

    def __init__(
        self,
        store: Store,
        platforms: Callable[[str], Sequence[Platform]],
        pool: Executor,
        *,
        deep: bool = False,
    ) -> None:
        if not isinstance(store, Readable):
            raise StoreError(f"{store!r} cannot be read back, so it cannot be checked")
        self._store = store
        self._readable: Readable = store
        self._platforms = platforms
        self._pool = pool
        self._deep = deep

    def check_repo(self, repo: str) -> RepoCheck:
        """Every tree ``repo`` lists; a failure to read the store is the result's ``error``."""
        done = RepoCheck(repo)
        try:
            self._check(repo, done)
        except SyncworkerError as exc:
            done.error = str(exc)
        return done

    def _check(self, repo: str, done: RepoCheck) -> None:
        listed = _by_tree(self._store.index(repo))
        platforms = self._platforms(repo)
        read: dict[Digest, Fetched | Damage] = {}
        trees = []
        for entries in listed:
            tree = CheckSink(self._store, read)
            TreeWalker(tree, platforms).walk(repo, as_of_bytes(entries[0].descriptor))
            trees.append(tree)
        blobs = {d: desc for tree in trees for d, desc in tree.blobs.items()}
        looked = self._pool.map(self._blob, [repo] * len(blobs), blobs.values())
        states = dict(zip(blobs, looked, strict=True))
        done.trees, done.blobs = len(listed), len(blobs)
        done.bytes_hashed = sum(hashed for _, hashed in states.values())
        for entries, tree in zip(listed, trees, strict=True):
            damage = [*tree.damage, *(d for b in tree.blobs if (d := states[b][0]) is not None)]
            if damage:
                done.broken.append(BrokenTree(repo, entries, tuple(dict.fromkeys(damage))))

    def _blob(self, repo: str, desc: Descriptor) -> tuple[Damage | None, int]:
        """The damage of one blob, if any, and the bytes hashed to find out."""
        size = self._readable.blob_size(repo, desc.digest)
        if size is None:
            return Damage(desc.digest, "absent", "blob"), 0
        if size != desc.size:
            return Damage(desc.digest, "corrupt", "blob"), 0
        if not self._deep:
            return None, 0
        hashed, whole = _hash(self._readable, repo, desc.digest)
        return (None if whole else Damage(desc.digest, "corrupt", "blob")), hashed


def _by_tree(entries: Sequence[IndexEntry]) -> list[tuple[IndexEntry, ...]]:
    """``entries`` grouped by the tree they list (its digest and the media type of its
    bytes, all a walk depends on), tagged first: a digest under two tags, or tagged and
    untagged, is walked once."""
    trees: dict[tuple[Digest, str], list[IndexEntry]] = {}
    for entry in entries:
        root = as_of_bytes(entry.descriptor)
        trees.setdefault((root.digest, root.media_type), []).append(entry)
    return [tuple(sorted(listing, key=lambda e: e.tag is None)) for listing in trees.values()]


def hashes_to_its_name(store: Readable, repo: str, digest: Digest) -> bool:
    """Whether ``repo`` holds ``digest`` with bytes that hash to it."""
    return store.blob_size(repo, digest) is not None and _hash(store, repo, digest)[1]


def _hash(store: Readable, repo: str, digest: Digest) -> tuple[int, bool]:
    """Bytes read, and whether they hash to ``digest``."""
    hasher = digest.hasher()
    read = 0
    try:
        with store.open_blob(repo, digest) as chunks:
            for chunk in chunks:
                read += len(chunk)
                hasher.update(chunk)
    except ContentError:  # a registry's verifying reader saw the mismatch first
        return read, False
    return read, hasher.hexdigest() == digest.hex
