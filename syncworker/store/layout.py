"""The OCI image layout, written once over any :class:`~syncworker.store.layoutbackend.Backend`.

Per destination repository ``<repo>`` (image-spec image-layout.md)::

    <repo>/oci-layout          {"imageLayoutVersion": "1.0.0"}
    <repo>/index.json          tagged and untagged manifests
    <repo>/blobs/<alg>/<hex>   blobs and manifests alike
    <repo>/.claim              the source it mirrors (syncworker/store/claim.py)

and, store-wide, ``.digests/<alg>/<hex>``: a hint naming a repository that holds the
digest, written as blobs are written, so finding a blob for a cross-repository link costs
one read and never a scan. Names starting with a dot are never repositories.

Order of writes makes a crash harmless: a blob appears at its final name only once it is
complete and verified; manifests are written after the blobs they refer to; the backend's
commit makes all of it durable, then replaces ``index.json`` atomically. Nothing half
written is ever reachable from an ``index.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from syncworker.errors import ContentError, StoreError
from syncworker.oci import Digest, verifying
from syncworker.store import indexdoc
from syncworker.store.claim import CLAIM_FILE, Source, dump_claim, load_claim
from syncworker.store.layoutbackend import Backend
from syncworker.store.memo import DIGESTS_KEPT, REPOS_KEPT, KeyedLocks, Recent
from syncworker.store.protocol import IndexEntry

__all__ = ["HINT_DIR", "INDEX_WRITE_ATTEMPTS", "RESERVED_NAMES", "LayoutStore", "check_repo_name"]

HINT_DIR = ".digests"
# A repository named like a file of a layout would be written inside its parent's layout
# (``a/b/blobs`` into repository ``a/b``'s blob directory, ``a/b/index.json`` over its
# index): refused by name, whatever the upstream calls it.
RESERVED_NAMES = frozenset({"blobs", indexdoc.INDEX_FILE, indexdoc.LAYOUT_FILE})
# A lost race of conditional index.json writes is retried this many times (each attempt
# re-reads and re-merges); the caller's repository lock makes even one retry rare.
INDEX_WRITE_ATTEMPTS = 8
_LAYOUT_FILES = frozenset({indexdoc.INDEX_FILE, indexdoc.LAYOUT_FILE})


def check_repo_name(repo: str) -> str:
    """Refuse a name that could leave the store's root, reach its hidden entries, or land
    inside another repository's layout.

    Names are validated long before they reach a store (``oci.validate_repository``); the
    first checks are defence in depth against ``..``, absolute names, empty segments and
    names starting with a dot (``.tmp``, ``.digests``: the store's own).
    """
    parts = repo.split("/")
    if (
        not repo
        or repo.startswith("/")
        or "\\" in repo
        or "\0" in repo
        or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
    ):
        raise StoreError(f"repository name {repo[:300]!r} escapes the store root")
    clash = next((p for p in parts if p in RESERVED_NAMES), None)
    if clash is not None:
        raise StoreError(
            f"repository {repo[:300]!r}: {clash!r} names a file of an OCI layout; refused,"
            " it would write into a parent repository's layout"
        )
    return repo


class LayoutStore:
    """A :class:`~syncworker.store.protocol.Store` of OCI layouts over ``backend``."""

    spools_blobs = False
    keeps_annotations = True

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._repo_locks = KeyedLocks()
        # What saves a request, bounded (memo.py): names checked, layouts written, where a
        # digest lives.
        self._with_layout: Recent[str, bool] = Recent(REPOS_KEPT)
        self._checked: Recent[str, bool] = Recent(REPOS_KEPT)
        self._hints: Recent[Digest, str] = Recent(DIGESTS_KEPT)
        # Digests whose hint this process has seen or written: True while it names a holder
        # (the first holder stays the hint, so writing it again would only be refused),
        # False once it proved stale (gc removed the blob there): the next holder replaces it.
        self._hinted: Recent[Digest, bool] = Recent(DIGESTS_KEPT)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.backend!r})"

    def location(self) -> str:
        """The store's directory, or ``s3://bucket/prefix``."""
        return self.backend.where("").removesuffix("/") or "/"

    # -- blobs --------------------------------------------------------------------------

    def has_blob(self, repo: str, digest: Digest) -> bool:
        return self.backend.head(self._blob_key(repo, digest)) is not None

    def has_manifest(self, repo: str, digest: Digest) -> bool:
        return self.has_blob(repo, digest)

    def find_blob(self, digest: Digest) -> str | None:
        known = self._hints.get(digest)
        if known is not None and self._holds(known, digest):
            return known
        hint = self._read_hint(digest)  # another process's copy, or ours proved stale
        if hint is not None:
            holds = self._holds(hint, digest)
            self._hinted.put(digest, holds)
            if holds:
                self._hints.put(digest, hint)
                return hint
        # No scan of the store for a blob without a hint (another tool's, or a crash's
        # between blob and hint): a miss costs at most one download, after which the
        # hint names our copy. A scan would hold every blob of the store in memory.
        return None

    def link_blob(self, src_repo: str, repo: str, digest: Digest) -> None:
        src, dst = self._blob_key(src_repo, digest), self._blob_key(repo, digest)
        if self.backend.head(dst) is not None:
            return
        self._ensure_layout(repo)
        if not self.backend.copy(src, dst):
            raise StoreError(f"{src_repo}: blob {digest} is absent ({self.backend.where(src)})")
        self._remember(digest, repo)

    def put_blob(self, repo: str, digest: Digest, size: int | None, chunks: Iterable[bytes]) -> int:
        key = self._blob_key(repo, digest)
        self._ensure_layout(repo)
        written = self.backend.write(key, verifying(chunks, digest, size), size)
        self._remember(digest, repo)
        return written

    def put_manifest(self, repo: str, digest: Digest, raw: bytes) -> None:
        self.put_blob(repo, digest, len(raw), [raw])

    def blob_size(self, repo: str, digest: Digest) -> int | None:
        return self.backend.head(self._blob_key(repo, digest))

    def open_blob(self, repo: str, digest: Digest) -> AbstractContextManager[Iterable[bytes]]:
        return self.backend.open(self._blob_key(repo, digest))

    def open_blob_range(
        self, repo: str, digest: Digest, start: int, length: int | None
    ) -> AbstractContextManager[Iterable[bytes]]:
        return self.backend.open(self._blob_key(repo, digest), start, length)

    def blob_file(self, repo: str, digest: Digest) -> str | None:
        return self.backend.local_path(self._blob_key(repo, digest))

    def blob_url(self, repo: str, digest: Digest, expires: int) -> str | None:
        return self.backend.presign(self._blob_key(repo, digest), expires)

    def read_blob(self, repo: str, digest: Digest) -> bytes:
        key = self._blob_key(repo, digest)
        found = self.backend.get(key)
        if found is None:
            raise StoreError(f"{repo}: blob {digest} is absent ({self.backend.where(key)})")
        return found.data

    # -- index.json -----------------------------------------------------------------------

    def index(self, repo: str, tags: Collection[str] | None = None) -> list[IndexEntry]:
        found = self.backend.get(self._repo_key(repo, indexdoc.INDEX_FILE))
        doc = indexdoc.new_index() if found is None else indexdoc.load_index(found.data, repo)
        entries = indexdoc.entries_of(doc, repo)
        return entries if tags is None else [e for e in entries if e.tag in tags]

    def update_index(self, repo: str, entries: Sequence[IndexEntry]) -> bool:
        stored = [self._as_stored(repo, entry) for entry in entries]
        return self._rewrite_index(repo, lambda doc: indexdoc.merge_index(doc, stored, repo))

    def remove_from_index(
        self, repo: str, tags: Collection[str], untagged: Collection[Digest]
    ) -> bool:
        digests = {str(d) for d in untagged}
        return self._rewrite_index(repo, lambda doc: indexdoc.remove_entries(doc, tags, digests))

    def _rewrite_index(
        self, repo: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> bool:
        """Apply ``change`` to ``index.json`` and replace it if it changed anything; a
        conditional write, re-read and re-applied when another writer got there first."""
        key = self._repo_key(repo, indexdoc.INDEX_FILE)
        with self._repo_locks.hold(repo):  # this process's writers; others: the condition
            for _ in range(INDEX_WRITE_ATTEMPTS):
                found = self.backend.get(key)
                doc = (
                    indexdoc.new_index() if found is None else indexdoc.load_index(found.data, repo)
                )
                merged = change(doc)
                if merged is None:
                    return False
                self._ensure_layout(repo)
                version = None if found is None else found.version
                if self.backend.put_if_match(key, indexdoc.dump_index(merged), version):
                    return True
        raise StoreError(f"{repo}: index.json kept changing under us ({self.backend.where(key)})")

    def _as_stored(self, repo: str, entry: IndexEntry) -> IndexEntry:
        """``entry`` with the size of the manifest as stored: readers check the size
        before the digest, and an upstream may have declared another one."""
        size = self.backend.head(self._blob_key(repo, entry.descriptor.digest))
        if size is None or size == entry.descriptor.size:
            return entry
        return IndexEntry(dataclasses.replace(entry.descriptor, size=size), entry.tag)

    # -- the claim ----------------------------------------------------------------------------

    def claim(self, repo: str, source: Source) -> Source:
        key = self._repo_key(repo, CLAIM_FILE)
        held = self._claim_at(key)
        if held is not None:
            return held
        data = dump_claim(source)
        # Published whole and never over an existing claim: of two racing writers the
        # first to publish wins, and both read the winner back.
        self.backend.write(key, [data], len(data))
        held = self._claim_at(key)
        if held is None:  # an empty claim (cut short by a power loss) is taken again
            self.backend.put(key, data)
            return source
        return held

    def claimant(self, repo: str) -> Source | None:
        return self._claim_at(self._repo_key(repo, CLAIM_FILE))

    def release_claim(self, repo: str, source: Source) -> None:
        key = self._repo_key(repo, CLAIM_FILE)
        if self._claim_at(key) == source:  # no other source claims over ours meanwhile
            self.backend.delete(key)

    def _claim_at(self, key: str) -> Source | None:
        found = self.backend.get(key)
        return None if found is None else load_claim(found.data, self.backend.where(key))

    # -- garbage collection --------------------------------------------------------------

    def blob_ages(self, repo: str) -> list[tuple[Digest, int, float]]:
        """Every blob (manifests too) of ``repo``: digest, size, and seconds since it was
        written or linked there."""
        found = []
        for algorithm in self.backend.list(self._repo_key(repo, "blobs/")).dirs:
            prefix = self._repo_key(repo, f"blobs/{algorithm}/")
            for name, (size, age) in self.backend.aged(prefix).items():
                try:
                    found.append((Digest.parse(f"{algorithm}:{name}"), size, age))
                except ContentError:
                    continue  # not a blob of ours: left alone
        return found

    def delete_blob(self, repo: str, digest: Digest) -> None:
        """Remove a blob of ``repo``, holding the repository's lock: garbage collection,
        for a blob its ``index.json`` does not reach, and a repair, for a blob whose bytes
        do not hash to its name (written again at once)."""
        self.backend.delete(self._blob_key(repo, digest))
        self._hints.pop(digest)

    # -- the whole store --------------------------------------------------------------------

    def repositories(self) -> list[str]:
        """Every repository with an ``index.json``, sorted."""
        return sorted(repo for repo, files in self._layouts() if indexdoc.INDEX_FILE in files)

    def layouts(self) -> list[str]:
        """Every repository holding a layout file, sorted: also those whose first sync
        ended before it wrote ``index.json`` (blobs, an ``oci-layout``, nothing listed)."""
        return sorted(repo for repo, _ in self._layouts())

    def close(self) -> None:
        self.backend.close()

    def clean_leftovers(self, max_age: float | None = None) -> int:
        """Remove temporaries left by a crash: at once those of writers known dead, others
        once untouched for ``max_age`` seconds (None: the backend's grace period)."""
        return self.backend.clean_leftovers(max_age)

    # -- keys -------------------------------------------------------------------------------

    def _repo_key(self, repo: str, name: str) -> str:
        if repo not in self._checked:
            self._checked.put(check_repo_name(repo), True)
        return f"{repo}/{name}"

    def _blob_key(self, repo: str, digest: Digest) -> str:
        return self._repo_key(repo, f"blobs/{digest.algorithm}/{digest.hex}")

    def _ensure_layout(self, repo: str) -> None:
        """``<repo>/oci-layout``, once per repository and process while it is among the
        recent ones; every layout reader checks it first. A crash may leave it empty: then
        it is written again."""
        if repo in self._with_layout:
            return
        key = self._repo_key(repo, indexdoc.LAYOUT_FILE)
        if not self.backend.put_if_absent(key, indexdoc.LAYOUT_BYTES):
            found = self.backend.get(key)
            if found is None or not found.data.strip():
                self.backend.put(key, indexdoc.LAYOUT_BYTES)
        self._with_layout.put(repo, True)

    # -- hints: where a digest is held --------------------------------------------------------

    def _hint_key(self, digest: Digest) -> str:
        return f"{HINT_DIR}/{digest.algorithm}/{digest.hex}"

    def _read_hint(self, digest: Digest) -> str | None:
        found = self.backend.get(self._hint_key(digest))
        if found is None:
            return None
        return found.data.decode("utf-8", "replace") or None

    def _remember(self, digest: Digest, repo: str) -> None:
        """Note where ``digest`` lives, for find_blob in this and every other process.

        Hints are checked against the blob itself before use, so losing or failing to
        write one costs at most a download: errors here do not fail a copy. The first
        repository to hold a digest stays its hint unless that one proved stale.
        """
        self._hints.put(digest, repo)
        hinted = self._hinted.get(digest)
        if hinted:
            return
        try:
            if hinted is False:
                self.backend.put(self._hint_key(digest), repo.encode())
            else:
                self.backend.put_if_absent(self._hint_key(digest), repo.encode())
        except StoreError:
            return
        self._hinted.put(digest, True)

    def _holds(self, repo: str, digest: Digest) -> bool:
        try:
            return self.has_blob(repo, digest)
        except StoreError:
            return False  # a corrupt hint naming no valid repository

    def _layouts(self) -> Iterator[tuple[str, frozenset[str]]]:
        """Every directory holding a layout file, with the names of its files; one listing
        per level, never descending into a layout's ``blobs``."""
        todo = [""]
        while todo:
            prefix = todo.pop()
            listing = self.backend.list(prefix)
            is_layout = not listing.files.isdisjoint(_LAYOUT_FILES)
            if is_layout and prefix:
                yield prefix.rstrip("/"), listing.files
            todo += [
                f"{prefix}{d}/"
                for d in listing.dirs
                if not d.startswith(".") and not (is_layout and d == "blobs")
            ]
