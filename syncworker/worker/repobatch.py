"""A run's repositories on workers: each synced and counted into its run, alone
(``sync_repo``) or several to a message (``sync_repos``, what a walk sends).

A message costs its worker the same whether it carries one repository or many (the broker's
delivery and acknowledgement, the hand-over to a pool process, Celery's tracing), so a walk
sends batches and a no-op run pays that once per batch. What one repository alone would get
from the task policy (``worker/policy.py``), a repository of a batch gets too:

- a sync that raises is not retried inside the batch: the repository goes to a
  ``sync_repo`` message of its own, sent after the delay the policy would wait, and that
  task retries it or records it failed; so does one whose lock another worker holds
  past ``BATCH_REPO_WAIT``, as the rest of the batch would wait behind it;
- each repository counts its starts under the name ``sync_repo`` counts it under, so one
  that kills its worker is given up after as many starts as when it is alone; a worker
  that dies under a batch gets the message again (acks-late), which skips what the run
  counted already and syncs the rest;
- the task's soft time limit, striking in a repository, counts that one failed (as alone)
  and sends the rest on; the hard limit, which kills the process, sends each repository
  not yet counted to a ``sync_repo`` of its own (``tasks.py``), where the one that hung
  meets the limit once more, alone, before it is counted failed;
- a batch still running after :data:`BATCH_SECONDS` sends, before its next repository,
  what is left of it on as two messages, so a batch of slow repositories spreads over idle
  workers, and a message is never held much longer than its slowest repository.

Only workers of this version know ``sync_repos``: upgrade every worker before a walk sends
batches (an older worker drops a task it does not know, and the run's sweep sends its
repositories again, one message each, once the run stops moving).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from functools import partial

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from syncworker.engine import RepoResult
from syncworker.errors import SyncworkerError
from syncworker.observe.logs import more_context
from syncworker.runs.repocount import record_repo, record_repo_lost
from syncworker.waits import BATCH_REPO_WAIT, TASK_REPO_WAIT
from syncworker.worker.policy import (
    MAX_DELIVERIES,
    brief,
    count_end,
    log_done,
    log_failed,
    retry_delay,
    soft_limit_struck,
    too_many_starts,
)
from syncworker.worker.send import send, send_at, send_each
from syncworker.worker.state import WorkerState
from syncworker.worker.tasknames import TASK_SYNC_REPO, TASK_SYNC_REPOS

__all__ = ["BATCH_SECONDS", "repo_work", "sync_batch", "sync_counted"]

log = logging.getLogger(__name__)

# A batch past this many seconds sends its remaining repositories on (module docstring).
BATCH_SECONDS = 5.0


def repo_work(run_id: str, repo: str) -> str:
    """The name a run's repository counts its starts under, whatever message carries it."""
    return f"run:{run_id}:{repo}"


def sync_counted(
    app: Celery,
    state: WorkerState,
    registry: str,
    repo: str,
    run_id: str | None,
    lock_wait: float = TASK_REPO_WAIT,
) -> RepoResult:
    """Mirror ``repo`` under its destination's lock, waiting ``lock_wait`` for it; count it
    into ``run_id`` if given. A run's repositories come from its walk of the listing;
    without a run, ``repo`` was named by whoever sent the task, and its absence upstream is
    a failure."""
    listed = run_id is not None
    with state.live.track(registry, repo, run_id) as live:
        result = state.mirror.sync_repo(registry, repo, lock_wait=lock_wait, listed=listed)
    if run_id and result.ok and result.refill_at is not None:
        # The upstream's pull budget deferred some tags: the repository is counted by the
        # message sent for when it refills, not by a worker waiting for it.
        log.info("%s/%s: %d tags deferred", registry, repo, len(result.deferred))
        state.coord.note_deferred(run_id, repo, len(result.deferred), result.refill_at)
        send_at(app, TASK_SYNC_REPO, [registry, repo, run_id], result.refill_at)
    elif run_id:
        # Whichever message syncs it (a resend for the refill, or the sweep's), counting it
        # drops what the pull budget held back of it.
        record_repo(state.coord, run_id, result, clear_live=live.written)
    return result


def sync_batch(
    app: Celery,
    state: WorkerState,
    batch: tuple[str, Sequence[str], str],
    *,
    again: bool,
    task_id: str | None,
) -> int:
    """Sync each repository of ``batch`` (registry, repositories, run id) in turn; how many
    this message went through before it sent the rest on. ``again``: this message was
    delivered or tried before, so what its run counted already is skipped."""
    registry, repos, run_id = batch
    counted = state.coord.counted(run_id, repos) if again else set()
    began = time.monotonic()
    for index, repo in enumerate(repos):
        if index and time.monotonic() - began > BATCH_SECONDS:
            _send_rest(app, (registry, repos[index:], run_id), counted, f"over {BATCH_SECONDS:g}s")
            return index
        if repo in counted:
            continue
        try:
            synced = _sync_one(app, state, (registry, repo, run_id), task_id)
        except SoftTimeLimitExceeded:
            # Struck in the batch's own calls around a repository's sync, not in it: that
            # repository goes on with the rest (counted once if it was counted already).
            _send_rest(app, (registry, repos[index:], run_id), counted, "out of time")
            return index
        if not synced:
            _send_rest(app, (registry, repos[index + 1 :], run_id), counted, "out of time")
            return index + 1
    return len(repos)


def _send_rest(
    app: Celery, batch: tuple[str, Sequence[str], str], counted: set[str], why: str
) -> None:
    """Send on, as two ``sync_repos`` messages, those of ``batch`` not in ``counted``."""
    registry, repos, run_id = batch
    left = [repo for repo in repos if repo not in counted]
    half = (len(left) + 1) // 2
    halves = [part for part in (left[:half], left[half:]) if part]
    if not halves:
        return
    log.info(
        "%s%s: %s, the rest sent on as %d messages",
        TASK_SYNC_REPOS, brief((registry, left, run_id)), why, len(halves),
    )  # fmt: skip
    send_each(app, TASK_SYNC_REPOS, [[registry, part, run_id] for part in halves])


def _sync_one(
    app: Celery, state: WorkerState, args: tuple[str, str, str], task_id: str | None
) -> bool:
    """Sync one repository of a batch; False if the task's soft time limit struck in it."""
    work = repo_work(args[2], args[1])
    with more_context(repository=args[1]):  # the task's context names registry and run
        starts = state.coord.delivery_started(work)
        try:
            return _sync_started(app, state, args, starts, task_id)
        finally:
            count_end(partial(state.coord.delivery_ended, work), TASK_SYNC_REPO, args)


def _sync_started(
    app: Celery, state: WorkerState, args: tuple[str, str, str], starts: int, task_id: str | None
) -> bool:
    registry, repo, run_id = args
    if starts > MAX_DELIVERIES:
        _lost(state, args, too_many_starts(starts))
        return True
    began = time.monotonic()
    try:
        sync_counted(app, state, registry, repo, run_id, BATCH_REPO_WAIT)
    except SoftTimeLimitExceeded:
        # As for a task alone: its time is up, so it is counted failed, not tried again.
        _lost(state, args, soft_limit_struck(app))
        return False
    except SyncworkerError as exc:
        delay = retry_delay(exc, 0, jitter=random.random())
        log.warning("%s%s: %s; sent on its own in %.0fs", TASK_SYNC_REPO, brief(args), exc, delay)
        send(app, TASK_SYNC_REPO, list(args), countdown=delay, ignore_result=True)
    except Exception:  # a bug: its own message's task policy records it by name
        log.exception("%s%s: unexpected error; sent on its own", TASK_SYNC_REPO, brief(args))
        send(app, TASK_SYNC_REPO, list(args), ignore_result=True)
    else:
        log_done(TASK_SYNC_REPO, args, time.monotonic() - began, task_id)
    return True


def _lost(state: WorkerState, args: tuple[str, str, str], reason: str) -> None:
    log_failed(TASK_SYNC_REPO, args, reason)
    record_repo_lost(state.coord, args[2], args[1], reason)
