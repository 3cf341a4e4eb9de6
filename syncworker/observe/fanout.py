"""Several observers behind one :class:`~syncworker.engine.Events` (metrics and a display)."""

from __future__ import annotations

from collections.abc import Sequence

from syncworker.engine import Events, RepoResult
from syncworker.engine.events import BlobOutcome, ImageOutcome, WaitKind
from syncworker.registry.stats import RequestHook

__all__ = ["Fanout"]


class Fanout:
    """Tells every observer of every event; requests go to the first that watches them
    (only the metrics do: a display counts repositories and blobs)."""

    def __init__(self, observers: Sequence[Events]) -> None:
        self._observers = tuple(observers)

    def requests(self, registry: str) -> RequestHook | None:
        hooks = (o.requests(registry) for o in self._observers)
        return next((h for h in hooks if h is not None), None)

    def repo_started(self, registry: str, repo: str) -> None:
        for observer in self._observers:
            observer.repo_started(registry, repo)

    def repo_done(self, result: RepoResult, seconds: float) -> None:
        for observer in self._observers:
            observer.repo_done(result, seconds)

    def image_done(self, registry: str, repo: str, outcome: ImageOutcome, size: int) -> None:
        for observer in self._observers:
            observer.image_done(registry, repo, outcome, size)

    def blob_done(self, registry: str, outcome: BlobOutcome, size: int, seconds: float) -> None:
        for observer in self._observers:
            observer.blob_done(registry, outcome, size, seconds)

    def waited(self, registry: str, kind: WaitKind, seconds: float) -> None:
        for observer in self._observers:
            observer.waited(registry, kind, seconds)

    def repos_listed(self, registry: str, count: int, complete: bool) -> None:
        for observer in self._observers:
            observer.repos_listed(registry, count, complete)
