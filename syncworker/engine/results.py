"""What the engine reports: per-image and per-repository outcomes, and progress events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Failure", "NullProgress", "Progress", "RepoResult"]


@dataclass(frozen=True, slots=True)
class Failure:
    """One thing that could not be mirrored, and why (never a secret: errors redact URLs)."""

    registry: str
    repo: str
    tag: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.repo}:{self.tag}" if self.tag else self.repo
        return f"{self.registry}/{where}: {self.reason}"


@dataclass(slots=True)
class RepoResult:
    """The outcome of one ``sync_repo`` or ``sync_image``."""

    registry: str
    repo: str
    destination: str | None
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    bytes_copied: int = 0
    blobs_fetched: int = 0
    blobs_linked: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


class Progress(Protocol):
    """Receives events as work happens (the CLI prints them, Celery tasks count them)."""

    def image_done(self, registry: str, repo: str, tag: str, copied: bool) -> None: ...

    def blob_done(self, digest: str, size: int, fetched: bool) -> None: ...

    def failed(self, failure: Failure) -> None: ...


class NullProgress:
    def image_done(self, registry: str, repo: str, tag: str, copied: bool) -> None:
        pass

    def blob_done(self, digest: str, size: int, fetched: bool) -> None:
        pass

    def failed(self, failure: Failure) -> None:
        pass
