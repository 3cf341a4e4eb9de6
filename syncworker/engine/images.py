"""Walk one manifest tree (an index, its children, their blobs) into a sink.

The one walk of a tree a sync, a repair, a dry run and a check share, so each decision is
made here once: a cycle is refused, a tree nested deeper than ``MAX_DEPTH`` is refused, an
index's children are those ``expected_children`` keeps, and a manifest the sink knows
whole ends the walk there without a GET (an index there still has its wanted children
looked up, since ``platforms`` may want more of them than when it was stored).

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
    #: Manifests the walk put (a walk of a tree the sink held whole puts none).
    put: int = 0


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

    def complete(
        self, dest_repo: str, desc: Descriptor, *, look_up_children: bool = True
    ) -> CopiedTree:
        """The tree of ``desc``, which ``dest_repo`` holds already (an unchanged tag):
        its digests, read from the sink, and for an index the wanted children it lacks
        (unless ``look_up_children`` is False: they are known to be there)."""
        tree = CopiedTree({desc.digest})
        if desc.is_index:
            _Walk(self, dest_repo, tree).whole_index(desc.digest, (), look_up_children)
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
            if desc.is_index:
                self.whole_index(digest, parents)
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
        self.tree.put += 1

    def whole_index(
        self, digest: Digest, parents: tuple[Digest, ...], look_up_children: bool = True
    ) -> None:
        """An index the sink holds: its children's digests without a GET, and the
        children ``platforms`` wants that it lacks. The index alone does not say its tree
        is whole once ``platforms`` was widened (or a filter changed which children are
        expected) since it was stored; each wanted child is asked of the sink (in a store,
        one lookup each) and only a missing one is fetched. ``look_up_children`` False:
        the caller knows them to be there (``plan.CHILDREN_FOR``), nothing is asked."""
        sink = self.walker.sink
        index = parse_manifest(sink.read_manifest(self.dest_repo, digest), None, digest)
        self.tree.digests.update(c.digest for c in index.children)
        if not look_up_children:
            return
        for child in expected_children(index, self.walker.platforms):
            self.node(child, (*parents, digest))


def _check_type(desc: Descriptor, manifest: Manifest) -> None:
    """What refers to a manifest (a tag's HEAD, an index entry) and the manifest itself
    agree on its type; otherwise readers of the layout would take it as something else."""
    if desc.media_type in MANIFEST_TYPES and desc.media_type != manifest.media_type:
        raise ContentError(
            f"manifest {desc.digest}: media type {manifest.media_type},"
            f" but referred to as {desc.media_type}"
        )
