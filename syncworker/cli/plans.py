"""What ``syncworker sync`` prints about prunes, and the whole output of ``--dry-run``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from syncworker.cli.units import REPOSITORIES, counted, human_size
from syncworker.engine import RepoResult, RunSummary
from syncworker.engine.dryrun import RepoPlan

__all__ = ["print_plan", "print_pruned"]


def print_pruned(results: Sequence[RepoResult], out: TextIO) -> None:
    """One line per pruned repository, and the total (bytes of the removed trees: what
    ``syncworker gc`` may reclaim)."""
    pruned = [r for r in results if r.pruned]
    for result in sorted(pruned, key=_where):
        names = ", ".join(result.pruned)
        print(f"  PRUNED {_where(result)}: {names} ({human_size(result.pruned_bytes)})", file=out)
    if pruned:
        total = sum(len(r.pruned) for r in pruned)
        size = human_size(sum(r.pruned_bytes for r in pruned))
        entries = counted(total, "entry", "entries")
        print(f"pruned {entries} ({size}; run syncworker gc to free it)", file=out)


def print_plan(summary: RunSummary, out: TextIO) -> int:
    """Each repository's plan, then the totals; the exit status (1 if anything failed)."""
    plans = sorted(summary.noted, key=_where)  # every plan: a dry run keeps them all
    for result in plans:
        print(f"{_where(result)} -> {result.dest_repo or '(no destination)'}", file=out)
        fetch = result.fetch_bytes if isinstance(result, RepoPlan) else {}
        copies = [f"{tag} ({human_size(fetch.get(tag, 0))})" for tag in result.copied]
        for verb, names in (
            ("copy", copies),
            ("prune", result.pruned),
            ("leave", result.skipped),
        ):
            if names:
                print(f"  {verb}: {', '.join(names)}", file=out)
        if result.skip_reason is not None:
            print(f"  skipped: {result.skip_reason}", file=out)
    pruned = sum(len(r.pruned) for r in plans)
    print(
        f"dry run, nothing written: {counted(len(plans), *REPOSITORIES)},"
        f" {counted(summary.copied, 'tag')} to copy ({counted(summary.blobs_fetched, 'blob')},"
        f" {human_size(summary.bytes_copied)} to fetch),"
        f" {pruned} to prune ({human_size(sum(r.pruned_bytes for r in plans))}),"
        f" {summary.skipped} unchanged, {counted(len(summary.failures), 'failure')}",
        file=out,
    )
    for failure in summary.failures:
        print(f"  FAILED {failure}", file=out)
    return 1 if summary.failures else 0


def _where(result: RepoResult) -> str:
    return f"{result.registry}/{result.upstream_repo}"
