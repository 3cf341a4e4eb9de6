"""What the engine tells an observer as it works: requests, blobs, images, repositories,
waits, and how many repositories a walk found.

The engine calls an :class:`Events`; metrics and progress displays implement it above the
engine (``syncworker.observe``), so the engine never imports them. :data:`NO_EVENTS` is the
default and costs nothing: its :meth:`~Events.requests` gives no hook, so the transport
does no per-request work at all.
"""

from __future__ import annotations

from typing import Literal, Protocol

from syncworker.engine.results import RepoResult
from syncworker.registry.stats import RequestHook

__all__ = ["NO_EVENTS", "BlobOutcome", "Events", "ImageOutcome", "NullEvents", "WaitKind"]

#: A blob made present by a download, or by a link/mount of a copy the store already had.
BlobOutcome = Literal["fetched", "linked"]
#: What a worker waited on: an upstream's rate limit, or another holder of a repository lock.
WaitKind = Literal["rate_limit", "lock"]
#: What became of one image (a tag, or a referrer copied untagged), as a run counts it.
ImageOutcome = Literal["copied", "unchanged", "failed"]


class Events(Protocol):
    def requests(self, registry: str) -> RequestHook | None:
        """The hook the transport of ``registry`` calls per response (None: no hook)."""
        ...

    def repo_started(self, registry: str, repo: str) -> None: ...

    def repo_done(self, result: RepoResult, seconds: float) -> None:
        """A repository is finished (ok or failed), ``seconds`` after it started."""
        ...

    def image_done(self, registry: str, repo: str, outcome: ImageOutcome, size: int) -> None:
        """One image of upstream ``repo`` is done, from one of its tag threads; ``size``:
        the bytes copied for it."""
        ...

    def blob_done(self, registry: str, outcome: BlobOutcome, size: int, seconds: float) -> None: ...

    def waited(self, registry: str, kind: WaitKind, seconds: float) -> None: ...

    def repos_listed(self, registry: str, count: int, complete: bool) -> None:
        """A catalog page gave ``count`` more repositories to sync; ``complete``: it was
        the last page, so the registry's total is known."""
        ...


class NullEvents:
    """Observes nothing."""

    def requests(self, registry: str) -> RequestHook | None:
        return None

    def repo_started(self, registry: str, repo: str) -> None:
        pass

    def repo_done(self, result: RepoResult, seconds: float) -> None:
        pass

    def image_done(self, registry: str, repo: str, outcome: ImageOutcome, size: int) -> None:
        pass

    def blob_done(self, registry: str, outcome: BlobOutcome, size: int, seconds: float) -> None:
        pass

    def waited(self, registry: str, kind: WaitKind, seconds: float) -> None:
        pass

    def repos_listed(self, registry: str, count: int, complete: bool) -> None:
        pass


NO_EVENTS: Events = NullEvents()
