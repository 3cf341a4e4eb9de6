"""Each repository counted into its run once, whatever delivered it: a sync's result with
its failures, or a task given up for good. Counting the last one finishes a run whose walk
(or check's fan-out) has ended."""

from __future__ import annotations

from syncworker.coord import Coordinator, RunFailure
from syncworker.engine import RepoResult

__all__ = ["record_repo", "record_repo_lost"]


def record_repo(
    coord: Coordinator, run_id: str, result: RepoResult, *, clear_live: bool = False
) -> None:
    """Count one finished repository into its run, with its failures, in one step;
    ``clear_live``: its worker wrote live counts, which this count replaces."""
    failures = [RunFailure(f.upstream_repo, f.tag, f.reason) for f in result.failures]
    coord.incr(
        run_id,
        once_for=result.upstream_repo,
        failures=failures,
        clear_live=clear_live,
        repos_done=int(result.ok and result.skip_reason is None),
        repos_failed=int(not result.ok),
        repos_skipped=int(result.skip_reason is not None),
        images_copied=len(result.copied),
        images_skipped=len(result.skipped),
        images_failed=len(result.failures),
        blobs_fetched=result.blobs_fetched,
        blobs_linked=result.blobs_linked,
        bytes=result.bytes_copied,
    )


def record_repo_lost(coord: Coordinator, run_id: str, repo: str, reason: str) -> None:
    """A repository's task (``sync_repo``, ``check_repo``) that failed for good outside the
    engine (retries exhausted, time limit): the live counts its deliveries may have left go
    with it."""
    failure = RunFailure(repo, None, reason)
    coord.incr(run_id, once_for=repo, failures=[failure], clear_live=True, repos_failed=1)
