"""A check of the whole store as a run: one ``check_repo`` task per repository, counted
into a run filed under a label such as ``(check --deep)``, so ``syncworker status`` and
the runs metrics show its progress as they show a walk's.

Celery-free: the caller passes ``enqueue`` (which sends ``check_repo`` for a batch of
repositories). The store's repositories are listed before the run starts, then fanned out
in batches, each marked once sent, and the run is marked walked: it finishes when the last
repository is counted, like a walk's. A repository is counted once (``once_for``), so a
redelivered task cannot count it twice. Run counters, read for a check: ``images_skipped``
trees found whole, ``images_copied`` trees repaired, ``images_failed`` trees still broken,
``bytes`` the bytes hashed again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from syncworker.coord import Coordinator, RunFailure

if TYPE_CHECKING:  # the engine stays out of what status and its run texts load
    from syncworker.engine.checkrun import CheckOutcome

__all__ = [
    "FANOUT_BATCH",
    "check_failures",
    "check_label",
    "check_mode",
    "failure_line",
    "fan_out_check",
    "record_check",
]

# What a check's run is filed under in place of a registry: parentheses, never a registry's
# name (like the catalog's failures), and the options, so that the sweep sends a lost
# repository again as it was sent, and the metrics tell a deep check's last success apart.
_LABEL = "(check{deep}{repair})"
_DEEP, _REPAIR = " --deep", " --repair"
# How the lines a check keeps in its run begin (the command prints them as they are).
_BROKEN, _NOT_REPAIRED, _FAILED = "BROKEN ", "NOT REPAIRED ", "FAILED "
# Repositories sent and marked per step: a walk's page.
FANOUT_BATCH = 1000

Enqueue = Callable[[Sequence[str], str], None]  # repositories, run id


def check_label(*, deep: bool, repair: bool) -> str:
    """The run's registry field of a check with these options."""
    return _LABEL.format(deep=_DEEP if deep else "", repair=_REPAIR if repair else "")


def check_mode(label: str) -> tuple[bool, bool] | None:
    """``(deep, repair)`` of a check run's label; None for a registry's run."""
    for deep in (False, True):
        for repair in (False, True):
            if label == check_label(deep=deep, repair=repair):
                return deep, repair
    return None


def fan_out_check(
    coord: Coordinator,
    label: str,
    run_id: str,
    repos: Sequence[str],
    enqueue: Enqueue,
    sweep: Callable[[], None],
) -> None:
    """Start run ``run_id`` filed under ``label`` and its ``sweep``, and send a check of
    each of ``repos``; the run ends once the last is counted (at once when there are none).
    The sweep goes before the fan-out, so a fan-out that dies part-way ends its run too
    (runs/sweep.py)."""
    coord.start_run(label, run_id)
    sweep()
    for start in range(0, len(repos), FANOUT_BATCH):
        fresh = coord.not_enqueued(run_id, repos[start : start + FANOUT_BATCH])
        enqueue(fresh, run_id)
        coord.mark_enqueued(run_id, *fresh)
    coord.end_walk(label, run_id)


def check_failures(outcome: CheckOutcome) -> list[RunFailure]:
    """What the run keeps of one repository: each tree left broken, each failed repair."""
    final = outcome.final
    found = [RunFailure(final.repo, t.tag_field, f"{_BROKEN}{t}") for t in final.broken]
    if final.error is not None:
        found.append(RunFailure(final.repo, None, f"{_FAILED}{final.repo}: {final.error}"))
    if outcome.repair is not None:
        found += [
            RunFailure(final.repo, f.tag, f"{_NOT_REPAIRED}{f.reason}")
            for f in outcome.repair.failures
        ]
    return found


def failure_line(failure: RunFailure) -> str:
    """A failure a check's run kept, as the command prints it: a worker's own line as it
    is; any other (a task given up: its worker died under it again and again) with the
    repository it is about."""
    if failure.reason.startswith((_BROKEN, _NOT_REPAIRED, _FAILED)):
        return failure.reason
    return f"{_FAILED}{failure.repo}: {failure.reason}"


def record_check(coord: Coordinator, run_id: str, outcome: CheckOutcome) -> None:
    """Count one checked repository into its run, with what is still broken, in one step."""
    final = outcome.final
    repaired = len(outcome.repair.copied) if outcome.repair is not None else 0
    whole = final.trees - len(final.broken) - repaired
    coord.incr(
        run_id,
        once_for=final.repo,
        failures=check_failures(outcome),
        repos_done=int(final.ok),
        repos_failed=int(not final.ok),
        images_skipped=max(0, whole),
        images_copied=repaired,
        images_failed=len(final.broken),
        bytes=outcome.found.bytes_hashed,
    )
