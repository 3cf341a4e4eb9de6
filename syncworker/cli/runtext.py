"""A run in text, as ``status``, ``status --watch`` and ``trigger --wait`` print it."""

from __future__ import annotations

from collections import defaultdict
from typing import TextIO

from syncworker.cli.units import human_size, utc
from syncworker.coord import RunStatus
from syncworker.runs.storecheck import check_mode

__all__ = ["FAILURES_SHOWN", "describe", "print_failures"]

# Failures printed per run in the text form (--json has them all).
FAILURES_SHOWN = 50


def describe(status: RunStatus) -> str:
    """One line: id, registry, state, counts (images as they end, those of repositories
    in flight too), rate and ETA."""
    c = status.counters
    images_failed = c.get("images_failed", 0)
    repos = {"failed": c.get("repos_failed", 0), "skipped": c.get("repos_skipped", 0)}
    notes = ", ".join(f"{n} {outcome}" for outcome, n in repos.items() if n)
    if check_mode(status.registry) is not None:  # a check: trees, and the bytes hashed
        images = f"{c.get('images_skipped', 0)} trees whole, {images_failed} broken"
        if c.get("images_copied", 0):
            images += f", {c['images_copied']} repaired"
    else:
        images = (
            f"{c.get('images_copied', 0)} images copied, {c.get('images_skipped', 0)} unchanged"
        )
        if images_failed:
            images += f", {images_failed} failed"
    if status.in_flight:
        images += f" ({status.in_flight} repos in flight)"
    state = status.state
    if state == "running" and status.walk_retry:  # before "elapsed": trigger --wait shows it
        state += f" (catalog walk {status.walk_retry})"
    parts = [
        f"{status.id} {status.registry} {state}:",
        f"{status.done}/{status.total} repos" + (f" ({notes})" if notes else ""),
        images + ",",
        f"{human_size(c.get('bytes', 0))},",
        f"{status.rate:.2f} repos/s,",
        f"elapsed {_duration(status.elapsed)}",
    ]
    if status.deferred_tags and status.refill_at is not None:
        refill = utc(status.refill_at)
        parts.append(f"{status.deferred_tags} tags deferred (pull budget refills {refill}),")
    eta = status.eta_seconds
    if status.state == "running":
        parts.append(f"ETA {_duration(eta)}" if eta is not None else "ETA unknown")
    return " ".join(parts)


def print_failures(status: RunStatus, out: TextIO, limit: int = FAILURES_SHOWN) -> None:
    """Failures grouped by repository, each cause once per tag."""
    by_repo: dict[str, list[str]] = defaultdict(list)
    for failure in status.failures:
        where = f"{failure.tag}: " if failure.tag else ""
        by_repo[failure.repo].append(f"{where}{failure.reason}")
    for shown, (repo, causes) in enumerate(sorted(by_repo.items())):
        if shown >= limit:
            print(f"  ... and {len(by_repo) - limit} more repositories", file=out)
            return
        print(f"  FAILED {repo}", file=out)
        for cause in causes:
            print(f"    {cause}", file=out)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
