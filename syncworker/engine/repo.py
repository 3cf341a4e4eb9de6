"""Mirror one repository: tags, the images they name, and what refers to those images.

For every tag the rules keep, HEAD the manifest; if the store has that tag at that digest,
that is all (a no-op run costs one request per tag plus the tag list). Otherwise copy the
tree and only then move the tag. Signature, attestation and referrers-fallback tags follow
the images they are about, whatever the tag rules say; referrers found through the API are
stored untagged, recursively, with cycles refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from syncworker.engine.images import CopiedTree, Fetched, ImageCopier
from syncworker.engine.plan import TagPlan, plan_tags, special_tag_subject
from syncworker.engine.results import Failure, Progress, RepoResult
from syncworker.errors import (
    InvalidNameError,
    NotFoundError,
    ReferenceCycleError,
    SyncworkerError,
)
from syncworker.filters import ContentRules
from syncworker.oci import Descriptor, Digest, parse_manifest, validate_tag
from syncworker.oci.mediatypes import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from syncworker.registry import RegistryClient
from syncworker.store import IndexEntry, Store

__all__ = ["RepoJob", "SIGNATURE_ARTIFACT_TYPES"]

log = logging.getLogger(__name__)

SIGNATURE_ARTIFACT_TYPES = frozenset(
    {
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        "application/vnd.cncf.notary.signature",
    }
)
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
# OCI-layout readers (skopeo 1.9, umoci) skip index.json entries of Docker types; the
# structures are the same, so the entry may name the OCI type while the bytes stay Docker's.
OCI_TWIN = {DOCKER_MANIFEST: OCI_MANIFEST, DOCKER_MANIFEST_LIST: OCI_INDEX}
UPSTREAM_MEDIA_TYPE = "io.syncworker.upstream.mediaType"
# Referrers of referrers (a signature on an SBOM on an image) are followed this deep; a
# hostile upstream cannot make a worker walk forever.
MAX_REFERRER_DEPTH = 8


@dataclass
class RepoJob:
    """One synchronisation of ``repo`` (upstream) into ``dest`` (store)."""

    client: RegistryClient
    store: Store
    images: ImageCopier
    progress: Progress
    registry: str
    repo: str
    dest: str
    only_signed: bool = False
    oci_index_types: bool = True
    result: RepoResult = field(init=False)
    _stored: dict[str, Digest] = field(init=False, default_factory=dict)
    _synced: set[str] = field(init=False, default_factory=set)
    _all_tags: set[str] = field(init=False, default_factory=set)
    _tags_listed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.result = RepoResult(self.registry, self.repo, self.dest)

    # -- whole repository -------------------------------------------------------------

    def run(self, rules: ContentRules) -> RepoResult:
        try:
            upstream_tags = self.client.tags(self.repo)
            self._load_stored()
        except SyncworkerError as exc:
            self._fail(None, exc)
            return self.result
        tags = self._valid_tags(upstream_tags)
        plan = plan_tags(tags, rules.filter_tags(self.repo, tags))
        for tag in plan.ordinary:
            self.sync_tag(tag)
        self._sync_special(plan)
        return self.result

    def run_single_tag(self, tag: str) -> RepoResult:
        """On demand: one tag, its cosign tags and its referrers (no tag listing, on
        either side)."""
        self._load_stored([tag])
        desc = self.sync_tag(tag)
        if desc is not None:
            self._load_stored(_cosign_tags(desc.digest))
            self._sync_cosign_tags(desc.digest)
        return self.result

    def run_single_digest(self, digest: Digest) -> RepoResult:
        """On demand: one manifest by digest, kept untagged, with its signatures."""
        try:
            desc = self.client.head_manifest(self.repo, str(digest))
            if not self.store.has_manifest(self.dest, digest):
                self.copy(desc, None)
            else:
                self.result.skipped.append(str(digest))
        except SyncworkerError as exc:
            self._fail(str(digest), exc)
            return self.result
        self._sync_cosign_tags(digest)
        return self.result

    def _sync_cosign_tags(self, digest: Digest) -> None:
        for tag in _cosign_tags(digest):
            try:
                desc = self.client.head_manifest(self.repo, tag)
            except NotFoundError:
                continue
            except SyncworkerError as exc:
                self._fail(tag, exc)
                continue
            self._guarded(tag, partial(self._apply, tag, desc))

    def _valid_tags(self, tags: Iterable[str]) -> list[str]:
        valid = []
        for tag in tags:
            try:
                valid.append(validate_tag(tag))
            except InvalidNameError as exc:
                self._fail(tag[:128], exc)
        self._all_tags = set(valid)
        self._tags_listed = True
        return valid

    def _load_stored(self, tags: list[str] | None = None) -> None:
        """What the store holds for every tag, or for ``tags`` only."""
        entries = self.store.index(self.dest, tags)
        self._stored.update({e.tag: e.descriptor.digest for e in entries if e.tag})

    def _sync_special(self, plan: TagPlan) -> None:
        """Take special tags whose subject was mirrored, until no more become eligible
        (a signature on an SBOM only becomes eligible once the SBOM is in)."""
        pending = dict(plan.special)
        while ready := [t for t, subject in pending.items() if subject in self._synced]:
            for tag in sorted(ready):
                del pending[tag]
                self.sync_tag(tag)

    # -- one tag ----------------------------------------------------------------------

    def sync_tag(self, tag: str) -> Descriptor | None:
        """Mirror ``tag``; return its descriptor, or None if it failed or was left out.

        A tag the store has is HEADed (the no-op test); a new one is fetched by tag at
        once, since its manifest is needed anyway.
        """
        return self._guarded(tag, partial(self._fetch_and_apply, tag))

    def _fetch_and_apply(self, tag: str) -> Descriptor | None:
        if tag in self._stored:
            return self._apply(tag, self.client.head_manifest(self.repo, tag))
        fetched = self.client.get_manifest(self.repo, tag)
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
            self._note_synced(desc)
            self.result.skipped.append(tag)
            self.progress.image_done(self.registry, self.repo, tag, copied=False)
            return desc
        if self.only_signed and special_tag_subject(tag) is None and not self._signed(desc):
            log.info("%s/%s:%s is not signed; skipped (onlySigned)", self.registry, self.repo, tag)
            self.result.skipped.append(tag)
            return None
        self.copy(desc, tag, fetched)
        return desc

    def copy(self, desc: Descriptor, tag: str | None, fetched: Fetched | None = None) -> None:
        """Copy the tree of ``desc`` and what refers to it, then record it in the index.

        The index entry is written last: if a referrer is refused (a cycle, bad content),
        the image stays unreachable rather than half-mirrored.
        """
        tree = self.images.copy(self.client, self.repo, self.dest, desc, fetched)
        entries = [IndexEntry(self._index_descriptor(desc), tag)]
        if tag is not None and special_tag_subject(tag) is not None and desc.is_index:
            entries += self._fallback_referrers(desc)
        if tag is None or special_tag_subject(tag) is None:
            self._follow_referrers(desc.digest, (desc.digest,))
        self.store.update_index(self.dest, entries)
        if tag is not None:
            self._stored[tag] = desc.digest
        self._account(tree, tag or str(desc.digest))

    def _account(self, tree: CopiedTree, name: str) -> None:
        self.result.copied.append(name)
        self.result.bytes_copied += tree.stats.bytes
        self.result.blobs_fetched += tree.stats.fetched
        self.result.blobs_linked += tree.stats.linked
        self._synced.update(str(d) for d in tree.digests)
        self.progress.image_done(self.registry, self.repo, name, copied=True)

    def _note_synced(self, desc: Descriptor) -> None:
        """An unchanged tag: its digest (and an index's children) may be the subject of
        special tags, read from the store without asking the upstream."""
        self._synced.add(str(desc.digest))
        if desc.is_index:
            raw = self.store.read_blob(self.dest, desc.digest)
            children = parse_manifest(raw, None, desc.digest).children
            self._synced.update(str(c.digest) for c in children)

    # -- referrers --------------------------------------------------------------------

    def _fallback_referrers(self, desc: Descriptor) -> list[IndexEntry]:
        """A referrers-fallback index: list its manifests untagged as well, so a registry
        serving this layout (zot) answers the referrers API for them."""
        raw = self.store.read_blob(self.dest, desc.digest)
        children = parse_manifest(raw, None, desc.digest).children
        return [IndexEntry(self._index_descriptor(c)) for c in children]

    def _follow_referrers(self, subject: Digest, chain: tuple[Digest, ...]) -> None:
        """Referrers through the API, when the upstream's tag list did not already carry
        them as a fallback tag; recursively, refusing cycles."""
        if f"{subject.algorithm}-{subject.hex}" in self._all_tags:
            return
        if len(chain) > MAX_REFERRER_DEPTH:
            raise ReferenceCycleError(f"referrers nested deeper than {MAX_REFERRER_DEPTH}")
        for referrer in self._list_referrers(subject):
            if referrer.digest in chain:
                raise ReferenceCycleError(
                    f"referrer {referrer.digest} of {subject} is also its ancestor"
                )
            # Copied even when present: cheap then (no GET), and it lists a referrer that a
            # crash left unlisted.
            tree = self.images.copy(self.client, self.repo, self.dest, referrer)
            self._follow_referrers(referrer.digest, (*chain, referrer.digest))
            self.store.update_index(self.dest, [IndexEntry(self._index_descriptor(referrer))])
            self._account(tree, str(referrer.digest))

    def _list_referrers(self, subject: Digest) -> list[Descriptor]:
        """With the tag list in hand, a registry without the referrers API costs nothing
        here: its fallback tags are in the list and handled as special tags."""
        if not self._tags_listed:
            return self.client.referrers(self.repo, subject)
        return self.client.referrers_api(self.repo, subject) or []

    def _signed(self, desc: Descriptor) -> bool:
        prefix = f"{desc.digest.algorithm}-{desc.digest.hex}"
        if f"{prefix}.sig" in self._all_tags:
            return True
        if prefix in self._all_tags:
            referrers = self.client.referrers(self.repo, desc.digest)
        else:
            referrers = self._list_referrers(desc.digest)
        return any(r.artifact_type in SIGNATURE_ARTIFACT_TYPES for r in referrers)

    def _index_descriptor(self, desc: Descriptor) -> Descriptor:
        return index_descriptor(desc, self.oci_index_types)

    # -- failures ---------------------------------------------------------------------

    def _fail(self, tag: str | None, exc: SyncworkerError) -> None:
        failure = Failure(self.registry, self.repo, tag, str(exc))
        log.warning("%s", failure)
        self.result.failures.append(failure)
        self.progress.failed(failure)


def index_descriptor(desc: Descriptor, oci_types: bool) -> Descriptor:
    """What index.json records: media type, digest, size (and artifactType for artifacts).
    Platform is kept for children listed untagged. With ``oci_types``, a Docker type is
    listed as its OCI twin and kept in an annotation (see ``layout_media_types``)."""
    media_type, annotations = desc.media_type, {}
    if oci_types and desc.media_type in OCI_TWIN:
        media_type = OCI_TWIN[desc.media_type]
        annotations = {UPSTREAM_MEDIA_TYPE: desc.media_type}
    return Descriptor(
        media_type,
        desc.digest,
        desc.size,
        platform=desc.platform,
        annotations=annotations,
        artifact_type=desc.artifact_type,
    )


def _cosign_tags(digest: Digest) -> list[str]:
    """cosign's tags for what it attaches to ``digest``: signature, attestation, SBOM."""
    return [f"{digest.algorithm}-{digest.hex}{suffix}" for suffix in COSIGN_SUFFIXES]
