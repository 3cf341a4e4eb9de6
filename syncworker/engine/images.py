"""Walk one manifest tree (an index, its children, their blobs) into a sink.

The one walk of a tree a sync, a repair, a dry run and a check share, so each decision is
made here once: a cycle is refused, a tree nested deeper than ``MAX_DEPTH`` is refused, an
index's children are those ``expected_children`` keeps, and a manifest the sink knows
whole ends the walk there without a GET.

Order makes a crash harmless: blobs, then each image manifest, then the index that lists
them. A manifest is put only after everything it refers to, so a manifest present in the
store means its whole tree is; that is also what lets a second run stop at the first
manifest it already has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from syncworker.engine.blobcopy import BlobStats
from syncworker.engine.sinks import Fetched, TreeSink
from syncworker.errors import ContentError, ReferenceCycleError
from syncworker.filters import expected_children
from syncworker.oci import Descriptor, Digest, Manifest, Platform, parse_manifest
from syncworker.oci.mediatypes import MANIFEST_TYPES

__all__ = ["MAX_DEPTH", "CopiedTree", "TreeWalker"]

#: Manifests above the deepest one a tree may have (its root has none). Indexes of indexes
#: are legal but rare; a hostile upstream could nest them without end.
MAX_DEPTH = 8


@dataclass(slots=True)
class CopiedTree:
    """What one walk cost, and every manifest digest in the tree (to match special tags)."""

    digests: set[Digest] = field(default_factory=set)
    stats: BlobStats = field(default_factory=BlobStats)


class TreeWalker:
    """Walks trees into ``sink``, keeping the children of indexes ``platforms`` wants."""

    def __init__(self, sink: TreeSink, platforms: Sequence[Platform] = ()) -> None:
        self.sink = sink
        self.platforms = platforms

    def walk(self, dest_repo: str, desc: Descriptor, fetched: Fetched | None = None) -> CopiedTree:
        """The tree of ``desc`` into ``dest_repo``; ``fetched`` is its manifest when
        already in hand (a new tag is fetched by tag, saving the HEAD)."""
        tree = CopiedTree()
        _Walk(self, dest_repo, tree).node(desc, (), fetched)
        return tree


@dataclass(slots=True)
class _Walk:
    walker: TreeWalker
    dest_repo: str
    tree: CopiedTree

    def node(
        self, desc: Descriptor, parents: tuple[Digest, ...], fetched: Fetched | None = None
    ) -> None:
        digest, sink = desc.digest, self.walker.sink
        if digest in parents:
            chain = " -> ".join(str(d) for d in (*parents, digest))
            raise ReferenceCycleError(f"manifest refers back to itself: {chain}")
        self.tree.digests.add(digest)
        if sink.whole(self.dest_repo, digest):
            if desc.is_index:  # its children's digests, without a GET
                raw = sink.read_manifest(self.dest_repo, digest)
                self.tree.digests.update(
                    c.digest for c in parse_manifest(raw, None, digest).children
                )
            return
        if len(parents) >= MAX_DEPTH:
            raise ContentError(f"manifest {digest} is nested more than {MAX_DEPTH} deep")
        fetched = fetched or sink.fetch(self.dest_repo, digest)
        if fetched is None:
            return
        raw, manifest = fetched
        _check_type(desc, manifest)
        if manifest.is_index:
            for child in expected_children(manifest, self.walker.platforms):
                self.node(child, (*parents, digest))
        else:
            self.tree.stats.add(sink.put_blobs(self.dest_repo, manifest))
        sink.put_manifest(self.dest_repo, digest, raw)


def _check_type(desc: Descriptor, manifest: Manifest) -> None:
    """What refers to a manifest (a tag's HEAD, an index entry) and the manifest itself
    agree on its type; otherwise readers of the layout would take it as something else."""
    if desc.media_type in MANIFEST_TYPES and desc.media_type != manifest.media_type:
        raise ContentError(
            f"manifest {desc.digest}: media type {manifest.media_type},"
            f" but referred to as {desc.media_type}"
        )
