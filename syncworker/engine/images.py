"""Copy one manifest tree (an index, its children, their blobs) into the store.

Order makes a crash harmless: blobs, then each image manifest, then the index that lists
them. A manifest is written only after everything it refers to, so a manifest present in
the store means its whole tree is; that is also what lets a second run stop at the first
manifest it already has, without a GET.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from syncworker.engine.blobs import BlobCopier, BlobStats
from syncworker.engine.plan import blobs_to_copy
from syncworker.errors import ContentError, ReferenceCycleError
from syncworker.filters import expected_children
from syncworker.oci import Descriptor, Digest, Manifest, Platform, parse_manifest
from syncworker.oci.mediatypes import MANIFEST_TYPES
from syncworker.registry import RegistryClient
from syncworker.store import Store

__all__ = ["CopiedTree", "Fetched", "ImageCopier"]

#: A manifest's bytes and what they say, as the registry client returns them.
Fetched = tuple[bytes, Manifest]
# Indexes of indexes are legal but rare; a hostile upstream could nest them without end.
MAX_DEPTH = 8


@dataclass(slots=True)
class CopiedTree:
    """What one copy did, and every manifest digest in the tree (to match special tags)."""

    digests: set[Digest] = field(default_factory=set)
    stats: BlobStats = field(default_factory=BlobStats)

    def add(self, blob: BlobStats) -> None:
        self.stats.fetched += blob.fetched
        self.stats.linked += blob.linked
        self.stats.bytes += blob.bytes


class ImageCopier:
    def __init__(
        self,
        store: Store,
        blobs: BlobCopier,
        pool: Executor,
        platforms: Sequence[Platform] = (),
        *,
        trust_present: bool = True,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._pool = pool
        self.platforms = platforms
        # False for a repair: a manifest found present is fetched and walked all the same,
        # since the tree below it is what was found broken.
        self._trust_present = trust_present

    def copy(
        self,
        client: RegistryClient,
        upstream_repo: str,
        dest_repo: str,
        desc: Descriptor,
        fetched: Fetched | None = None,
    ) -> CopiedTree:
        """Copy the tree of ``desc`` from ``upstream_repo`` into ``dest_repo``; ``fetched``
        is its manifest when already in hand (a new tag is fetched by tag, saving the HEAD)."""
        tree = CopiedTree()
        self._copy(client, upstream_repo, dest_repo, desc, (), tree, fetched)
        return tree

    def _copy(
        self,
        client: RegistryClient,
        upstream_repo: str,
        dest_repo: str,
        desc: Descriptor,
        parents: tuple[Digest, ...],
        tree: CopiedTree,
        fetched: Fetched | None = None,
    ) -> None:
        digest = desc.digest
        if digest in parents:
            chain = " -> ".join(str(d) for d in (*parents, digest))
            raise ReferenceCycleError(f"manifest refers back to itself: {chain}")
        tree.digests.add(digest)
        if self._trust_present and self._store.has_manifest(dest_repo, digest):
            if desc.is_index:
                self._note_children(dest_repo, digest, tree)
            return
        if len(parents) >= MAX_DEPTH:
            raise ContentError(f"manifest {digest} is nested more than {MAX_DEPTH} deep")
        raw, manifest = fetched or client.get_manifest(upstream_repo, str(digest))
        _check_type(desc, manifest)
        if manifest.is_index:
            for child in expected_children(manifest, self.platforms):
                self._copy(client, upstream_repo, dest_repo, child, (*parents, digest), tree)
        else:
            self._copy_blobs(client, upstream_repo, dest_repo, manifest, tree)
        self._store.put_manifest(dest_repo, digest, raw)

    def _copy_blobs(
        self,
        client: RegistryClient,
        upstream_repo: str,
        dest_repo: str,
        manifest: Manifest,
        tree: CopiedTree,
    ) -> None:
        futures = [
            self._pool.submit(self._blobs.copy, client, upstream_repo, dest_repo, blob)
            for blob in blobs_to_copy(manifest)
        ]
        # Wait for all before raising, so no copy is still writing when the error surfaces.
        errors = []
        for future in futures:
            try:
                tree.add(future.result())
            except Exception as exc:  # noqa: BLE001 - re-raised below, first one wins
                errors.append(exc)
        if errors:
            raise errors[0]

    def _note_children(self, dest_repo: str, digest: Digest, tree: CopiedTree) -> None:
        """An index already in the store: record its children's digests without a GET."""
        raw = self._store.read_blob(dest_repo, digest)
        manifest = parse_manifest(raw, None, digest)
        tree.digests.update(child.digest for child in manifest.children)


def _check_type(desc: Descriptor, manifest: Manifest) -> None:
    """What refers to a manifest (a tag's HEAD, an index entry) and the manifest itself
    agree on its type; otherwise readers of the layout would take it as something else."""
    if desc.media_type in MANIFEST_TYPES and desc.media_type != manifest.media_type:
        raise ContentError(
            f"manifest {desc.digest}: media type {manifest.media_type},"
            f" but referred to as {desc.media_type}"
        )
