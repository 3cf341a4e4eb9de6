"""The mirror itself: plan what a repository lacks, then copy it in a crash-safe order."""

from syncworker.engine.mirror import Mirror
from syncworker.engine.results import Failure, NullProgress, Progress, RepoResult
from syncworker.engine.runner import RunSummary, run_registries

__all__ = [
    "Failure",
    "Mirror",
    "NullProgress",
    "Progress",
    "RepoResult",
    "RunSummary",
    "run_registries",
]
