"""What the engine reports: per-image and per-repository outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncworker.engine.blobcopy import BlobStats

__all__ = ["Failure", "RepoResult"]


@dataclass(frozen=True, slots=True)
class Failure:
    """One thing that could not be mirrored, and why (never a secret: errors redact URLs)."""

    registry: str
    upstream_repo: str
    tag: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.upstream_repo}:{self.tag}" if self.tag else self.upstream_repo
        return f"{self.registry}/{where}: {self.reason}"


@dataclass(slots=True)
class RepoResult:
    """The outcome of one ``sync_repo`` or ``sync_image``: ``upstream_repo`` on
    ``registry``, stored as ``dest_repo`` (None when no content rule names one)."""

    registry: str
    upstream_repo: str
    dest_repo: str | None
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    bytes_copied: int = 0
    blobs_fetched: int = 0
    blobs_linked: int = 0
    #: Tags (and untagged digests) removed by a prune, and the bytes of their trees: what
    #: ``syncworker gc`` may reclaim, if nothing else refers to it.
    pruned: list[str] = field(default_factory=list)
    pruned_bytes: int = 0
    #: Why the repository was left alone without being a failure: the catalog lists it but
    #: it has no tags (what a push that failed part-way leaves upstream). None otherwise.
    skip_reason: str | None = None
    #: Tags left for later because the upstream's pull budget was spent (not failures),
    #: and when the budget refills (Unix time; the latest such time).
    deferred: list[str] = field(default_factory=list)
    refill_at: float | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def defer(self, name: str, refill_at: float) -> None:
        """``name`` needs a pull the budget does not have before ``refill_at``."""
        self.deferred.append(name)
        self.refill_at = max(self.refill_at or refill_at, refill_at)

    def add_copy(self, name: str, stats: BlobStats) -> None:
        """``name`` (a tag, or an untagged digest) copied, at the cost of ``stats``."""
        self.copied.append(name)
        self.bytes_copied += stats.bytes
        self.blobs_fetched += stats.fetched
        self.blobs_linked += stats.linked
