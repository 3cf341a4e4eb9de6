"""Mirror one repository: tags, the images they name, and what refers to those images.

For every tag the rules keep, HEAD the manifest; if the store has that tag at that digest,
that is all (a no-op run costs one request per tag plus the tag list). Otherwise copy the
tree and only then move the tag. Tags run ``tag_concurrency`` at a time, so a far-away
upstream is not paid one round trip per tag in series: one in the job's own thread, the
others on the process's shared tag pool (threads outlive a repository: a no-op run of many
small repositories would otherwise start threads for each); their blobs go to the process's
shared blob pool. Special tags follow the images they are about, whatever the tag rules say,
once those are mirrored; referrers found through the API are stored untagged
(:mod:`syncworker.engine.referrers`).

Every effect goes through ``sink`` (:mod:`syncworker.engine.sinks`): into
the store for a sync, into memory for a dry run, so both make the same decisions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial

from syncworker.engine.events import NO_EVENTS, Events, ImageOutcome
from syncworker.engine.images import CopiedTree, TreeWalker
from syncworker.engine.index import IndexWriter
from syncworker.engine.locks import HELD, RepoHold
from syncworker.engine.plan import (
    CHILDREN_FOR,
    LayoutMediaTypes,
    TagPlan,
    index_descriptor,
    plan_tags,
    skip_reason,
    valid_tags,
)
from syncworker.engine.prune import plan_prune
from syncworker.engine.referrers import ReferrerWalk, special_tags_of
from syncworker.engine.results import Failure, RepoResult
from syncworker.engine.sinks import Fetched, Sink
from syncworker.errors import (
    NotFoundError,
    PullDeferred,
    SyncworkerError,
)
from syncworker.filters import (
    ContentRules,
    children_key,
    special_tag_subject,
)
from syncworker.oci import Descriptor, Digest, Platform, parse_manifest
from syncworker.registry import Deadline, RegistryClient
from syncworker.store import IndexEntry, Store

__all__ = ["DEFAULT_TAG_CONCURRENCY", "RepoJob"]

log = logging.getLogger(__name__)

# Tags of one repository in flight at once: enough to hide an upstream's round trip, few
# enough that one repository does not take every connection to its registry.
DEFAULT_TAG_CONCURRENCY = 4


@dataclass
class RepoJob:
    """One synchronisation of ``upstream_repo`` (on ``registry``) into ``dest_repo``."""

    client: RegistryClient
    store: Store  # read here; written only through ``sink``
    sink: Sink
    #: Runs the tags of a repository that has several, but those of the job's own thread;
    #: shared by the process's jobs.
    tag_pool: Executor
    #: This job's (``client`` is bounded by it), ended if its thread is interrupted while
    #: its tags or blobs run on other threads.
    deadline: Deadline
    registry: str
    upstream_repo: str
    dest_repo: str
    platforms: Sequence[Platform] = ()
    only_signed: bool = False
    layout_media_types: LayoutMediaTypes = "preserve"
    tag_concurrency: int = DEFAULT_TAG_CONCURRENCY
    prune: bool = False
    #: The repository comes from the upstream's catalog, not from a name someone gave: a
    #: 404 for its tag list then means "listed without tags" and skips it.
    catalogued: bool = False
    events: Events = NO_EVENTS
    #: The repository's lock, asked before each index.json write and before a prune
    #: removes anything (a lock lost meanwhile stops both: another sync or a gc may hold
    #: the repository now).
    hold: RepoHold = HELD
    images: TreeWalker = field(init=False)
    result: RepoResult = field(init=False)
    _index: IndexWriter = field(init=False)
    _stored: dict[str, Digest] = field(init=False, default_factory=dict)
    #: Of each stored tag of an index: the setting its children were completed under.
    _children_for: dict[str, str | None] = field(init=False, default_factory=dict)
    _listed: set[Digest] = field(init=False, default_factory=set)
    _synced: set[Digest] = field(init=False, default_factory=set)
    _referrers: ReferrerWalk = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.images = TreeWalker(self.sink, self.platforms)
        self.result = self.sink.new_result(self.registry, self.upstream_repo, self.dest_repo)
        self._index = IndexWriter(self.sink, self.dest_repo, self._unlisted, self.hold)
        self._referrers = ReferrerWalk(
            self.client,
            self.images,
            self.upstream_repo,
            self.dest_repo,
            self.layout_media_types,
            self._account,
        )

    # -- whole repository -------------------------------------------------------------

    def run(self, rules: ContentRules) -> RepoResult:
        try:
            upstream_tags = self.client.tags(self.upstream_repo)
            self._load_stored()
        except SyncworkerError as exc:
            self.result.skip_reason = skip_reason(exc, self.catalogued)
            if self.result.skip_reason is None:
                self._fail(None, exc)
            return self.result
        tags = self._valid_tags(upstream_tags)
        plan = plan_tags(tags, rules.filter_tags(self.upstream_repo, tags))
        with self._index:
            self._sync_tags(plan.ordinary)
            self._sync_special(plan)
        if self.prune:
            self._prune()
        return self.result

    def _prune(self) -> None:
        """Remove what the upstream no longer lists (``plan_prune``); only ever reached
        with the complete tag list of this run in hand."""
        try:
            entries = self.store.index(self.dest_repo)
            prune = plan_prune(
                self.store, self.dest_repo, entries, self._referrers.upstream_tags, self.platforms
            )
            if prune:
                self.hold.ensure()
            if prune and self.sink.remove_from_index(self.dest_repo, prune.tags, prune.untagged):
                self.result.pruned, self.result.pruned_bytes = prune.names, prune.size
                log.info("%s: pruned %s", self.dest_repo, ", ".join(prune.names))
        except SyncworkerError as exc:
            self._fail(None, exc)

    def run_single_tag(self, tag: str) -> RepoResult:
        """On demand: one tag, its special tags and its referrers (no tag listing, on
        either side): each special tag HEADed, so the copy holds what a sync of the whole
        repository would (a referrer attached since, on an upstream without the referrers
        API, changes the tag-schema tag)."""
        with self._index:
            self._load_stored([tag])
            desc = self.sync_tag(tag)
            if desc is not None:
                self._load_stored(special_tags_of(desc.digest))
                self._sync_special_tags_of(desc.digest)
        return self.result

    def run_single_digest(self, digest: Digest) -> RepoResult:
        """On demand: one manifest by digest, kept untagged, with its special tags."""
        with self._index:
            try:
                desc = self.client.head_manifest(self.upstream_repo, str(digest))
                if not self.sink.whole(self.dest_repo, digest):
                    self.copy(desc, None)
                else:  # held under a tag, maybe: listed untagged too, kept once it goes
                    self._complete(desc, str(digest))
                    self._index.add([IndexEntry(self._index_descriptor(desc))])
            except SyncworkerError as exc:
                self._fail(str(digest), exc)
                return self.result
            self._sync_special_tags_of(digest)
        return self.result

    def _sync_special_tags_of(self, digest: Digest) -> None:
        for tag in special_tags_of(digest):
            try:
                desc = self.client.head_manifest(self.upstream_repo, tag)
            except NotFoundError:
                continue
            except SyncworkerError as exc:
                self._fail(tag, exc)
                continue
            self._guarded(tag, partial(self._apply, tag, desc))

    def _valid_tags(self, tags: Iterable[str]) -> list[str]:
        valid = valid_tags(tags, self._fail)
        self._referrers.tags_listed(valid)
        return valid

    def _load_stored(self, tags: list[str] | None = None) -> None:
        """What the store holds for every tag, or for ``tags`` only. Entries written under
        another ``layout_media_types`` are listed again under the current one (from the
        entry alone, no download)."""
        entries = self.store.index(self.dest_repo, tags)
        self._stored.update({e.tag: e.descriptor.digest for e in entries if e.tag})
        self._children_for.update(
            {e.tag: e.descriptor.annotations.get(CHILDREN_FOR) for e in entries if e.tag}
        )
        self._listed.update(e.descriptor.digest for e in entries)
        self._index.relist(entries, self.layout_media_types)

    def _sync_special(self, plan: TagPlan) -> None:
        """Take special tags whose subject was mirrored, until no more become eligible
        (a signature on an SBOM only becomes eligible once the SBOM is in)."""
        pending = dict(plan.special)
        while ready := sorted(t for t, subject in pending.items() if subject in self._synced):
            for tag in ready:
                del pending[tag]
            self._sync_tags(ready)

    def _sync_tags(self, tags: list[str]) -> None:
        """``tags``, ``tag_concurrency`` at a time; index entries in the order given. Lanes
        take the tags in order, one after another, until none is left (or the job's
        deadline has ended): one lane in this thread, so the job moves on however busy the
        tag pool is, the others on the pool. This returns, or raises, once every lane has
        ended."""
        self._index.expect(tags)
        if len(tags) == 1:
            self._sync_in_order(tags[0])
            return
        left, taking = iter(tags), threading.Lock()

        def lane() -> None:
            while not self.deadline.ended():
                with taking:
                    tag = next(left, None)
                if tag is None:
                    return
                self._sync_in_order(tag)

        with self.deadline.stopping() as lanes:
            for _ in range(min(self.tag_concurrency, len(tags)) - 1):
                lanes.append(self.tag_pool.submit(lane))
            lane()
            # None left to take: a lane not started yet is cancelled, not waited for (a
            # cancelled future counts as done only once a pool thread has dequeued it).
            lanes[:] = [started for started in lanes if not started.cancel()]
        for ended in lanes:  # what a lane raised: a defect (failures are in the result)
            ended.result()

    def _sync_in_order(self, tag: str) -> None:
        try:
            self.sync_tag(tag)
        finally:
            self._index.done(tag)

    # -- one tag ----------------------------------------------------------------------

    def sync_tag(self, tag: str) -> Descriptor | None:
        """Mirror ``tag``; return its descriptor, or None if it failed or was left out.

        A tag the store has is HEADed (the no-op test); a new one is fetched by tag at
        once, since its manifest is needed anyway, except from an upstream that counts
        pulls: HEADed there too (free), its tree may be in the store already (a walk a
        deferral cut short) and then costs no pull.
        """
        return self._guarded(tag, partial(self._fetch_and_apply, tag))

    def _fetch_and_apply(self, tag: str) -> Descriptor | None:
        if tag in self._stored or self.client.counts_pulls:
            return self._apply(tag, self.client.head_manifest(self.upstream_repo, tag))
        fetched = self.client.get_manifest(self.upstream_repo, tag)
        return self._apply(tag, fetched[1].descriptor(), fetched)

    def _guarded(self, tag: str, step: Callable[[], Descriptor | None]) -> Descriptor | None:
        try:
            return step()
        except SyncworkerError as exc:
            self._fail(tag, exc)
            return None

    def _apply(
        self, tag: str, desc: Descriptor, fetched: Fetched | None = None
    ) -> Descriptor | None:
        if self._stored.get(tag) == desc.digest:
            settled = not self.store.keeps_annotations or self._children_for.get(
                tag
            ) == children_key(self.platforms)
            tree = self.images.complete(self.dest_repo, desc, look_up_children=not settled)
            if not settled and desc.is_index:  # completed under this setting from now on
                self._index.add([IndexEntry(self._index_descriptor(desc), tag)], tag)
            if special_tag_subject(tag) is None:  # referrers attached since, with the tag
                self._index.add(self._referrers.refresh(desc.digest, self._listed), tag)
            self._complete_done(tree, tag)
            return desc
        if (
            self.only_signed
            and special_tag_subject(tag) is None
            and not self._referrers.signed(desc)
        ):
            log.info(
                "%s/%s:%s is not signed; skipped (onlySigned)",
                self.registry,
                self.upstream_repo,
                tag,
            )
            self._unchanged(tag)
            return None
        self.copy(desc, tag, fetched)
        return desc

    def copy(self, desc: Descriptor, tag: str | None, fetched: Fetched | None = None) -> None:
        """Copy the tree of ``desc`` and what refers to it, then record it in the index.

        The index entry is recorded last: if a referrer is refused (a cycle, bad content),
        the image stays unreachable rather than half-mirrored.
        """
        tree = self.images.walk(self.dest_repo, desc, fetched)
        special = tag is not None and special_tag_subject(tag) is not None
        entries = [] if special else self._referrers.follow(desc.digest, (desc.digest,))
        entries.append(IndexEntry(self._index_descriptor(desc), tag))
        if special and desc.is_index:
            entries += self._special_index_entries(desc)
        self._index.add(entries, tag)
        if tag is not None:
            self._stored[tag] = desc.digest
        self._account(tree, tag or str(desc.digest))

    def _account(self, tree: CopiedTree, name: str) -> None:
        with self._lock:  # tags finish on several threads
            self.result.add_copy(name, tree.stats)
            self._synced.update(tree.digests)
        self._image_done("copied", tree.stats.bytes)

    def _unchanged(self, name: str) -> None:
        self.result.skipped.append(name)
        self._image_done("unchanged")

    def _image_done(self, outcome: ImageOutcome, size: int = 0) -> None:
        self.events.image_done(self.registry, self.upstream_repo, outcome, size)

    def _complete(self, desc: Descriptor, name: str) -> None:
        self._complete_done(self.images.complete(self.dest_repo, desc), name)

    def _complete_done(self, tree: CopiedTree, name: str) -> None:
        """A manifest the store holds under ``name``: unchanged, unless an index lacked
        children ``platforms`` now wants (then copied). Its digests (an index's children
        too) may be the subject of special tags, read from the store."""
        if tree.put:
            self._account(tree, name)
            return
        with self._lock:
            self._synced.update(tree.digests)
        self._unchanged(name)

    def _stored_children(self, desc: Descriptor) -> tuple[Descriptor, ...]:
        raw = self.sink.read_manifest(self.dest_repo, desc.digest)
        return parse_manifest(raw, None, desc.digest).children

    # -- referrers --------------------------------------------------------------------

    def _special_index_entries(self, desc: Descriptor) -> list[IndexEntry]:
        """A referrers-tag-schema index: list its manifests untagged as well, so a registry
        serving this layout (zot) answers the referrers API for them."""
        return [IndexEntry(self._index_descriptor(c)) for c in self._stored_children(desc)]

    def _index_descriptor(self, desc: Descriptor) -> Descriptor:
        return index_descriptor(desc, self.layout_media_types, children_key(self.platforms))

    # -- failures ---------------------------------------------------------------------

    def _fail(self, tag: str | None, exc: SyncworkerError) -> None:
        if isinstance(exc, PullDeferred):
            # Not a failure: the next run (or the resend when the budget refills) takes it.
            log.info("%s/%s: %s", self.registry, self.upstream_repo, exc)
            with self._lock:
                self.result.defer(tag or self.upstream_repo, exc.refill_at)
            return
        self._record(tag, exc)
        if tag is not None:
            self._image_done("failed")

    def _unlisted(self, name: str, exc: SyncworkerError) -> None:
        """The index entry of ``name`` (a tag, or an untagged digest) could not be written:
        its tree is stored but not reachable, so it is a failure, not a copy."""
        with self._lock:
            if name in self.result.copied:
                self.result.copied.remove(name)
        self._record(name, exc)

    def _record(self, tag: str | None, exc: SyncworkerError) -> None:
        failure = Failure(self.registry, self.upstream_repo, tag, str(exc))
        log.warning("%s", failure)
        self.result.failures.append(failure)
