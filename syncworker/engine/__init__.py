"""The mirror itself: plan what a repository lacks, then copy it in a crash-safe order."""

from syncworker.engine.events import NO_EVENTS, Events
from syncworker.engine.locks import LocalLocks, Locks
from syncworker.engine.mirror import Mirror
from syncworker.engine.results import Failure, RepoResult
from syncworker.engine.runner import RunSummary, run_registries
from syncworker.engine.upstream import Upstream

__all__ = [
    "NO_EVENTS",
    "Events",
    "Failure",
    "LocalLocks",
    "Locks",
    "Mirror",
    "RepoResult",
    "RunSummary",
    "Upstream",
    "run_registries",
]
