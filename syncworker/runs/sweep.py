"""The run sweeper: a run that stopped moving gets its lost messages sent again.

A Redis broker can lose a message outright: a ``BRPOP`` whose reply dies with the
connection (a Redis restart, a network cut) has taken the message off the list before any
worker saw it, and no visibility timeout brings it back. Then a walk page or a repository
would never be done and its run never finish. So each walk has a sweep task that looks
again every :func:`sweep_seconds`: if nothing moved over a whole interval (cursor, counts),
it sends the walk's next page again while the walk is on, and once the walk is over,
``sync_repo`` for every repository enqueued but not yet counted. Duplicates are harmless:
the cursor moves by compare-and-set, a repository is counted once per run, and a repeated
sync finds everything in the store.

A check's run is fanned out by the command that started it, not by a task: if nothing moved
over a whole interval before its fan-out ended, that command died part-way, and nothing can
send the rest. The run then ends failed, saying so, rather than staying "running" until it
expires.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from syncworker.coord import FAILED, RUNNING, Coordinator
from syncworker.errors import ConfigError
from syncworker.runs.storecheck import check_mode

__all__ = [
    "DEFAULT_SWEEP_SECONDS",
    "SWEEP_ENV",
    "Resend",
    "end_lost_fan_out",
    "progress_mark",
    "stalled",
    "sweep_seconds",
]

SWEEP_ENV = "SYNCWORKER_SWEEP_SECONDS"
# Longer than a typical repository takes, so a run that is merely busy with large ones is not
# sent again (a resend is harmless but costs a manifest HEAD per tag).
DEFAULT_SWEEP_SECONDS = 15 * 60
# The counters that move as each image of a repository ends.
IMAGE_COUNTERS = ("images_copied", "images_skipped", "images_failed")


def sweep_seconds() -> float:
    raw = os.environ.get(SWEEP_ENV)
    if not raw:
        return DEFAULT_SWEEP_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ConfigError(SWEEP_ENV, f"must be a positive number of seconds, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class Resend:
    walk: bool = False
    repos: list[str] = field(default_factory=list)
    #: A check's fan-out stopped for good: the run is to end (:func:`end_lost_fan_out`).
    fan_out_lost: bool = False


def progress_mark(coord: Coordinator, registry: str, run_id: str) -> str | None:
    """A fingerprint of how far ``run_id`` got; None once it is over (or gone). Images
    count too, those of repositories in flight included, so a run busy with a large
    repository is seen moving."""
    status = coord.run_status(run_id)
    if status is None or status.state != RUNNING:
        return None
    walk = coord.current_walk(registry) == run_id
    cursor = coord.cursor(registry) if walk else None
    images = sum(status.counters.get(name, 0) for name in IMAGE_COUNTERS)
    return f"walk={walk} cursor={cursor} total={status.total} done={status.done} images={images}"


def stalled(
    coord: Coordinator, registry: str, run_id: str, previous: str | None
) -> tuple[str | None, Resend]:
    """The run's mark now, and what to send again if it has not moved since ``previous``."""
    mark = progress_mark(coord, registry, run_id)
    if mark is None or mark != previous:
        return mark, Resend()
    if check_mode(registry) is not None and not coord.walked(run_id):
        return mark, Resend(fan_out_lost=True)
    if coord.current_walk(registry) == run_id:
        # Still walking: the page is what is stuck; repositories not yet done are expected
        # to wait in the queue behind the ones in progress.
        return mark, Resend(walk=True)
    return mark, Resend(repos=coord.uncounted(run_id))


def end_lost_fan_out(coord: Coordinator, label: str, run_id: str) -> None:
    """End check run ``run_id``, whose fan-out stopped part-way: failed, saying how far
    it got (what was sent is still checked, and counted into it no more)."""
    status = coord.run_status(run_id)
    sent = status.total if status is not None else 0
    reason = (
        f"the check stopped sending repositories after {sent} (the command that started it"
        " died); run the check again"
    )
    coord.record_failure(run_id, label, None, reason)
    coord.finish_run(run_id, FAILED)
