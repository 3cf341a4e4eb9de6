"""Everything kept in Redis: key schema, catalog cursor, locks, blob single-flight, run state."""

from syncworker.coord.coordinator import Coordinator
from syncworker.coord.runstate import (
    COUNTERS,
    FAILED,
    FINISHED,
    LIVE_COUNTERS,
    RECENT_RUNS,
    RUNNING,
    RunFailure,
    RunStatus,
    RunTotals,
)
from syncworker.errors import LockBusy

__all__ = [
    "COUNTERS",
    "FAILED",
    "FINISHED",
    "LIVE_COUNTERS",
    "RECENT_RUNS",
    "RUNNING",
    "Coordinator",
    "RunFailure",
    "LockBusy",
    "RunStatus",
    "RunTotals",
]
