"""The ``Store`` protocol the engine writes through, and the entries of an ``index.json``.

The OCI layout implementation over small backends is :mod:`syncworker.store.layout`; a
destination that is itself a registry implements this protocol directly.

A store only ever knows destination repositories, so here ``repo`` always means one: the
engine, which knows both kinds, passes its ``dest_repo``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from syncworker.oci import Descriptor, Digest
from syncworker.store.claim import Source

__all__ = [
    "REF_NAME",
    "BlobHints",
    "ClaimRecords",
    "IndexEntry",
    "Readable",
    "Repairable",
    "RepoHolder",
    "Servable",
    "Store",
    "held",
]

#: image-spec annotations.md: the annotation that carries a tag in an OCI layout's index.
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One manifest in a repository's ``index.json``.

    ``tag`` is None for manifests kept untagged: referrers, signatures found through the
    referrers API, and images synced by digest.
    """

    descriptor: Descriptor
    tag: str | None = None


@runtime_checkable
class BlobHints(Protocol):
    """Digest -> a destination repository holding it, shared by every process that
    writes the destination, so that a blob is mounted rather than fetched again."""

    def blob_hint(self, registry: str, digest: str) -> str | None: ...

    def set_blob_hint(self, registry: str, digest: str, repo: str) -> None: ...


@runtime_checkable
class ClaimRecords(Protocol):
    """Destination repository -> the source it mirrors (``registry/repository``), shared by
    every process that writes a registry destination (``registry`` is its host:port)."""

    def claim_destination(self, registry: str, repo: str, source: str) -> str: ...

    def destination_claimant(self, registry: str, repo: str) -> str | None: ...

    def release_destination(self, registry: str, repo: str, source: str) -> None: ...


@runtime_checkable
class RepoHolder(Protocol):
    """A store that can itself keep other processes out of a repository (a lock file on
    a filesystem). Syncs and gc both hold it, so they exclude each other on the same
    store whatever else coordinates them, Redis or nothing."""

    def hold(
        self, repo: str, *, blocking_timeout: float | None = None
    ) -> AbstractContextManager[None]:
        """Hold ``repo``; :class:`~syncworker.errors.LockBusy` after ``blocking_timeout``
        seconds (None: as long as it takes). Released when the holder's process dies."""
        ...

    def drop_unused_locks(self) -> int:
        """Remove what holding left for repositories that hold nothing now (deleted by
        hand, or never written), never a hold another process has; how many."""
        ...


def held(store: object, repo: str, blocking_timeout: float | None) -> AbstractContextManager[None]:
    """``store``'s own hold on ``repo`` when it has one (:class:`RepoHolder`), else
    nothing to hold."""
    if isinstance(store, RepoHolder):
        return store.hold(repo, blocking_timeout=blocking_timeout)
    return nullcontext()


@runtime_checkable
class Store(Protocol):
    """A destination for mirrored repositories. Every method is safe to call from threads.

    Repository names reaching a store are already validated (``oci.validate_repository``).
    """

    #: Whether the engine keeps a large blob in a local temporary file while it writes it,
    #: so that a write broken part-way is sent again from there instead of the blob being
    #: fetched from the upstream twice (small blobs are kept in memory for every store):
    #: a registry destination, whose upload is one request a network can break. A layout
    #: on disk or in S3 (which resends its own parts) does not need the second copy.
    spools_blobs: bool

    #: Whether :meth:`index` gives back the annotations :meth:`update_index` was given
    #: (an ``index.json`` does; a registry keeps tags, not entries). The sync records there
    #: which ``platforms`` an index's children were completed under; without them it
    #: trusts a stored index whole, as it cannot tell that setting changed.
    keeps_annotations: bool

    def has_blob(self, repo: str, digest: Digest) -> bool:
        """Whether ``repo`` already holds the complete, verified blob."""
        ...

    def has_manifest(self, repo: str, digest: Digest) -> bool:
        """Whether ``repo`` holds the manifest ``digest`` (and so its whole tree). In a
        layout a manifest is a blob; a registry keeps them apart."""
        ...

    def find_blob(self, digest: Digest) -> str | None:
        """A repository of this store that holds ``digest``, or None. Used to dedupe.

        Sees blobs written by other processes as soon as their ``put_blob``/``link_blob``
        returned (the engine waits on a per-digest single-flight, then asks again), so a
        backend keeps a store-wide digest -> repository hint next to the layout.
        """
        ...

    def link_blob(self, src_repo: str, repo: str, digest: Digest) -> None:
        """Make the blob held by ``src_repo`` present in ``repo`` without downloading it
        (a hard link on a filesystem, a server-side copy in S3)."""
        ...

    def put_blob(self, repo: str, digest: Digest, size: int | None, chunks: Iterable[bytes]) -> int:
        """Stream ``chunks`` into ``repo`` as ``digest``; return the bytes written.

        The store hashes what it writes and makes the blob visible only if the digest
        (and ``size``, when given) match; on any error nothing is left at the final name.
        """
        ...

    def put_manifest(self, repo: str, digest: Digest, raw: bytes) -> None:
        """Store manifest bytes exactly as received (they are a blob of the layout)."""
        ...

    def read_blob(self, repo: str, digest: Digest) -> bytes:
        """Read a small blob (a manifest) whole. Raises StoreError if it is absent."""
        ...

    def index(self, repo: str, tags: Collection[str] | None = None) -> list[IndexEntry]:
        """The entries of ``repo``'s ``index.json``; empty if the repository is new.

        With ``tags``, only the entries of those tags: all a single-image sync needs, and
        on a registry a read per tag instead of one per tag of the repository."""
        ...

    def update_index(self, repo: str, entries: Sequence[IndexEntry]) -> bool:
        """Merge ``entries`` into ``index.json`` and replace it atomically.

        An entry with a tag replaces any entry holding that tag; an untagged entry is added
        unless that digest is already listed. Returns False, and writes nothing, when the
        merge changes nothing (so a no-op run writes no object). The caller holds the
        repository's lock; a backend may add its own local lock as well.
        """
        ...

    def remove_from_index(
        self, repo: str, tags: Collection[str], untagged: Collection[Digest]
    ) -> bool:
        """Remove the entries of ``tags`` and the untagged entries of ``untagged`` from
        ``index.json`` (a prune); False, writing nothing, if none is listed. Blobs stay. A
        store that cannot remove tags raises StoreError saying so."""
        ...

    def repositories(self) -> list[str]:
        """Every repository with an ``index.json``, sorted."""
        ...

    def claim(self, repo: str, source: Source) -> Source:
        """Record that ``repo`` mirrors ``source`` unless it already mirrors another; return
        the source it mirrors (``source`` itself when the claim is, or now becomes, ours).
        Called under the repository's lock before anything else is written; of concurrent
        first claims one wins (see :mod:`syncworker.store.claim`). A repository written
        before claims existed is claimed by its next sync."""
        ...

    def claimant(self, repo: str) -> Source | None:
        """The source ``repo`` is claimed by, or None; reads only."""
        ...

    def release_claim(self, repo: str, source: Source) -> None:
        """Withdraw ``source``'s claim on ``repo`` (the sync that took it left nothing
        there); a claim of another source, or none, is left as it is. Called under the
        repository's lock."""
        ...

    def clean_leftovers(self) -> int:
        """Remove temporaries left by a crash; return how many were removed.

        Only those older than a grace period, since another process may be writing one
        right now; backends accept ``max_age=`` (seconds, 0 for all) to override it.
        """
        ...

    def close(self) -> None:
        """Close the connections the store keeps open; it is not used afterwards."""
        ...


@runtime_checkable
class Readable(Protocol):
    """What checking a store needs beyond writing it: a blob's size as stored, and its
    bytes streamed, so that it can be hashed again (``syncworker check --deep``)."""

    def blob_size(self, repo: str, digest: Digest) -> int | None:
        """The stored size of ``repo``'s blob (or manifest) ``digest``; None if absent."""
        ...

    def open_blob(self, repo: str, digest: Digest) -> AbstractContextManager[Iterable[bytes]]:
        """The stored bytes of ``digest`` as they are, unverified, in chunks. Raises
        StoreError if it is absent or cannot be read."""
        ...


@runtime_checkable
class Repairable(Protocol):
    """A store that can drop one blob whose bytes do not hash to its name, so that a
    repair writes it again (a store keeps an existing blob: it is addressed by content)."""

    def delete_blob(self, repo: str, digest: Digest) -> None: ...


@runtime_checkable
class Servable(Protocol):
    """What serving a store over HTTP needs beyond :class:`Readable`: part of a blob, and
    where the kernel or the client can take a blob from without it passing through us."""

    def open_blob_range(
        self, repo: str, digest: Digest, start: int, length: int | None
    ) -> AbstractContextManager[Iterable[bytes]]:
        """``length`` stored bytes of ``digest`` from ``start`` (None: to the end), in
        chunks; StoreError if it is absent or cannot be read."""
        ...

    def blob_file(self, repo: str, digest: Digest) -> str | None:
        """The local file of ``digest`` (it may be absent), to send with ``sendfile``; None
        when the store keeps no local files."""
        ...

    def blob_url(self, repo: str, digest: Digest, expires: int) -> str | None:
        """A URL the blob can be fetched from for ``expires`` seconds without credentials
        (presigned); None when the store has no such URLs. It does not check presence."""
        ...
