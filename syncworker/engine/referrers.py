"""What refers to an image, for one repository job: signatures, attestations, SBOMs.

Found through the referrers API, or as the special tags the upstream's tag list carries
(then handled as tags, not here). Walked recursively, each subject listed once per job,
with cycles and depths beyond :data:`MAX_REFERRER_DEPTH` refused; each referrer's tree is
copied through the job's :class:`~syncworker.engine.images.TreeWalker` and stored
untagged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from syncworker.engine.images import CopiedTree, TreeWalker
from syncworker.engine.plan import LayoutMediaTypes, index_descriptor
from syncworker.errors import ReferenceCycleError
from syncworker.filters import SPECIAL_SUFFIXES, special_tag
from syncworker.oci import Descriptor, Digest
from syncworker.registry import RegistryClient
from syncworker.store import IndexEntry

__all__ = ["MAX_REFERRER_DEPTH", "SIGNATURE_ARTIFACT_TYPES", "ReferrerWalk", "special_tags_of"]

SIGNATURE_ARTIFACT_TYPES = frozenset(
    {
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        "application/vnd.cncf.notary.signature",
    }
)
# Referrers of referrers (a signature on an SBOM on an image) are followed this deep; a
# hostile upstream cannot make a worker walk forever.
MAX_REFERRER_DEPTH = 8


@dataclass
class ReferrerWalk:
    """The referrers of one job's images: ``account`` is told of every tree copied."""

    client: RegistryClient
    images: TreeWalker
    upstream_repo: str
    dest_repo: str
    layout_media_types: LayoutMediaTypes
    account: Callable[[CopiedTree, str], None]
    #: The upstream's tag list, once listed (its special tags are then handled as tags).
    upstream_tags: set[str] = field(init=False, default_factory=set)
    _tags_listed: bool = field(init=False, default=False)
    _walked: set[Digest] = field(init=False, default_factory=set)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def tags_listed(self, tags: Iterable[str]) -> None:
        self.upstream_tags = set(tags)
        self._tags_listed = True

    def follow(self, subject: Digest, chain: tuple[Digest, ...]) -> list[IndexEntry]:
        """Referrers through the API, when the upstream's tag list did not already carry
        them as a special tag; recursively, refusing cycles. Each subject is listed once
        per job: a lattice of referrers costs requests per manifest, not per path. Returns
        their index entries, deepest first."""
        if special_tag(subject) in self.upstream_tags or not self._first_walk(subject):
            return []
        return self._copy(subject, self._list(subject), chain)

    def refresh(self, subject: Digest, listed: set[Digest]) -> list[IndexEntry]:
        """An unchanged image: copy the referrers attached upstream since it was mirrored
        (a signature, an SBOM). One request, on upstreams with the referrers API only: the
        client learns once that a registry has none, and then the fallback tag in the tag
        list brings them as a special tag. Referrers in ``listed`` (what the index already
        lists) are not walked again."""
        if special_tag(subject) in self.upstream_tags or not self._first_walk(subject):
            return []
        found = self.client.referrers_api(self.upstream_repo, subject) or []
        new = [r for r in found if r.digest not in listed]
        return self._copy(subject, new, (subject,))

    def signed(self, desc: Descriptor) -> bool:
        if special_tag(desc.digest, ".sig") in self.upstream_tags:
            return True
        if special_tag(desc.digest) in self.upstream_tags:
            referrers = self.client.referrers(self.upstream_repo, desc.digest)
        else:
            referrers = self._list(desc.digest)
        return any(r.artifact_type in SIGNATURE_ARTIFACT_TYPES for r in referrers)

    def _copy(
        self, subject: Digest, referrers: list[Descriptor], chain: tuple[Digest, ...]
    ) -> list[IndexEntry]:
        entries: list[IndexEntry] = []
        if len(chain) > MAX_REFERRER_DEPTH:
            raise ReferenceCycleError(f"referrers nested deeper than {MAX_REFERRER_DEPTH}")
        for referrer in referrers:
            if referrer.digest in chain:
                raise ReferenceCycleError(
                    f"referrer {referrer.digest} of {subject} is also its ancestor"
                )
            if referrer.digest in self._walked:
                continue
            # Copied even when present: cheap then (no GET), and it lists a referrer that a
            # crash left unlisted.
            tree = self.images.walk(self.dest_repo, referrer)
            entries += self.follow(referrer.digest, (*chain, referrer.digest))
            entries.append(IndexEntry(index_descriptor(referrer, self.layout_media_types)))
            self.account(tree, str(referrer.digest))
        return entries

    def _first_walk(self, subject: Digest) -> bool:
        with self._lock:
            first = subject not in self._walked
            self._walked.add(subject)
            return first

    def _list(self, subject: Digest) -> list[Descriptor]:
        """With the tag list in hand, a registry without the referrers API costs nothing
        here: its special tags are in the list and handled as such."""
        if not self._tags_listed:
            return self.client.referrers(self.upstream_repo, subject)
        return self.client.referrers_api(self.upstream_repo, subject) or []


def special_tags_of(digest: Digest) -> list[str]:
    """The special tags about ``digest``: the referrers tag schema's (where an upstream
    without the referrers API lists them), then cosign's signature, attestation, SBOM."""
    return [special_tag(digest), *(special_tag(digest, suffix) for suffix in SPECIAL_SUFFIXES)]
