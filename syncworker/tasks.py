"""The public Celery tasks, and the internal batches and run sweep. Thin: the engine mirrors
and checks, ``worker.repobatch`` syncs and counts a run's repositories, ``runs.catalogwalk``
walks, ``runs.repocount`` and ``runs.storecheck`` count, ``runs.sweep`` sweeps,
``worker.policy`` retries. Arguments are plain values; credentials never travel in a
message, workers read them from their own config.

Other services call them by name::

    app.send_task("syncworker.walk_catalog", args=["docker.io"])          # run id = task id
    app.send_task("syncworker.sync_image", args=["docker.io", "library/alpine", "3.20"])
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, shared_task

from syncworker.coord import Coordinator
from syncworker.engine import Failure, RepoResult
from syncworker.engine.checkrun import check_one, checker
from syncworker.errors import SyncworkerError
from syncworker.runs.catalogwalk import continue_walk, give_up_walk, trigger_walk
from syncworker.runs.repocount import record_repo_lost
from syncworker.runs.storecheck import check_failures, check_mode, record_check
from syncworker.runs.sweep import end_lost_fan_out, stalled
from syncworker.waits import TASK_REPO_WAIT
from syncworker.worker.checks import check_args
from syncworker.worker.policy import SyncTask
from syncworker.worker.repobatch import repo_work, sync_batch, sync_counted
from syncworker.worker.send import (
    CeleryWalkQueue,
    send_at,
    send_each,
    start_sweep,
    sweep_interval,
)
from syncworker.worker.state import WorkerState, config_of, worker_state
from syncworker.worker.tasknames import (
    TASK_CHECK_REPO,
    TASK_SWEEP,
    TASK_SYNC_IMAGE,
    TASK_SYNC_REPO,
    TASK_SYNC_REPOS,
    TASK_WALK,
)

__all__ = [
    "check_repo",
    "summarize",
    "sweep_run",
    "sync_image",
    "sync_repo",
    "sync_repos",
    "walk_catalog",
]

log = logging.getLogger(__name__)


class _Task(SyncTask):
    @property
    def state(self) -> WorkerState:
        """This process's state, its store and Mirror open: what a task's work uses, in
        the process that runs it."""
        state = worker_state(config_of(self.app))
        state.open()
        return state

    @property
    def coord(self) -> Coordinator:
        """Redis alone: what recording a task's progress or give-up needs. Celery runs a
        give-up in the worker's main process on a hard time limit, which syncs nothing."""
        return worker_state(config_of(self.app)).coord

    def started(self) -> int:
        """How many starts of this work have not ended, this one included (the policy gives
        the work up past MAX_DELIVERIES), counted in Redis under :meth:`_work`'s name.

        A message's first delivery is one start and costs nothing to count; only a
        redelivered message (the broker marks it so: its worker died, or lost the
        connection, under it) counts its starts, plus the first, which was not counted.
        """
        work = self._work()
        if work is None:
            return 1
        name, every_start = work
        if not every_start and not self._redelivered():
            return 1
        counted = self.state.coord.delivery_started(name)
        return counted if every_start else counted + 1

    def ended(self) -> None:
        work = self._work()
        if work is not None and (work[1] or self._redelivered()):
            self.coord.delivery_ended(work[0])

    def _work(self) -> tuple[str, bool] | None:
        """The name this start is counted under, and whether every start is counted or only
        redeliveries; None when the task is called directly, not from a message."""
        message = self._message()
        return None if message is None else (message, False)

    def _redelivered(self) -> bool:
        return bool((self.request.delivery_info or {}).get("redelivered"))

    def _message(self) -> str | None:
        """This message's name; a retry is a new message with the same task id. None when
        the task is called directly, not from a message."""
        if self.request.id is None:
            return None
        return f"{self.request.id}:{self.request.retries}"


class _WalkTask(_Task):
    def retrying(self, args: tuple[Any, ...], kwargs: dict[str, Any], note: str) -> None:
        """``status`` and ``trigger --wait`` show it while the walk waits."""
        _, run_id = _walk_args(args, kwargs, self.request.id)
        self.coord.note_walk_retry(run_id, note)

    def give_up(self, args: tuple[Any, ...], kwargs: dict[str, Any], reason: str) -> dict[str, Any]:
        registry, run_id = _walk_args(args, kwargs, self.request.id)
        self.coord.note_walk_retry(run_id, None)  # no retry comes: the failure says why
        give_up_walk(self.coord, registry, run_id, reason)
        return {"registry": registry, "run_id": run_id, "failures": [reason]}


class _RepoTask(_Task):
    def _work(self) -> tuple[str, bool] | None:
        """A run's repository is one work whatever message carries it: the walk's, the
        sweep's resends (new messages), their retries. Each would otherwise count from
        zero, so a repository that kills its worker would cost MAX_DELIVERIES kills per
        resend; counted together, and every start of them, it costs that many per run."""
        args, kwargs = tuple(self.request.args or ()), self.request.kwargs or {}
        run_id = _run_of(args, kwargs)
        if self.request.id is None or not run_id:
            return super()._work()
        return repo_work(run_id, _repo_args(args, kwargs)[1]), True

    def progress(self, state: str, result: dict[str, Any] | None) -> None:
        """Only a repository sync sent without a run (by the API) has a request to move."""
        run_id = _run_of(tuple(self.request.args or ()), self.request.kwargs or {})
        if self.request.id is not None and not run_id:
            self.coord.move_request(self.request.id, state, result)

    def give_up(self, args: tuple[Any, ...], kwargs: dict[str, Any], reason: str) -> dict[str, Any]:
        registry, repo = _repo_args(args, kwargs)
        run_id = _run_of(args, kwargs)
        if run_id:
            record_repo_lost(self.coord, run_id, repo, reason)
        return _failed(registry, repo, None, reason)


class _BatchTask(_Task):
    def _work(self) -> tuple[str, bool] | None:
        """Each repository of the batch counts its own starts (worker/repobatch.py)."""
        return None

    def give_up(self, args: tuple[Any, ...], kwargs: dict[str, Any], reason: str) -> dict[str, Any]:
        """The batch failed as a whole (the hard time limit killed it, or what it sends could
        not be sent past its retries): each of its repositories not yet counted goes to a
        message of its own, where the policy deals with it alone."""
        registry, repos, run_id = _batch_args(args, kwargs)
        try:
            counted = self.coord.counted(run_id, repos)
        except SyncworkerError:  # sent again all the same: each is counted once
            counted = set()
        left = [[registry, repo, run_id] for repo in repos if repo not in counted]
        send_each(self.app, TASK_SYNC_REPO, left)
        return {"registry": registry, "run_id": run_id, "failures": [reason]}


class _ImageTask(_Task):
    def progress(self, state: str, result: dict[str, Any] | None) -> None:
        if self.request.id is not None:
            self.coord.move_request(self.request.id, state, result)

    def give_up(self, args: tuple[Any, ...], kwargs: dict[str, Any], reason: str) -> dict[str, Any]:
        registry, repo = _repo_args(args, kwargs)
        reference = kwargs.get("reference", args[2] if len(args) > 2 else None)
        return _failed(registry, repo, reference, reason)


class _CheckTask(_Task):
    def give_up(self, args: tuple[Any, ...], kwargs: dict[str, Any], reason: str) -> dict[str, Any]:
        repo = kwargs.get("repo", args[0] if args else "?")
        run_id = kwargs.get("run_id", args[1] if len(args) > 1 else None)
        if run_id:
            record_repo_lost(self.coord, run_id, repo, reason)
        return {"repo": repo, "ok": False, "failures": [reason]}


def _repo_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str]:
    registry = kwargs.get("registry", args[0] if args else "?")
    return registry, kwargs.get("repo", args[1] if len(args) > 1 else "?")


def _batch_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, list[str], str]:
    registry = kwargs.get("registry", args[0] if args else "?")
    repos = kwargs.get("repos", args[1] if len(args) > 1 else [])
    return registry, repos, kwargs.get("run_id", args[2] if len(args) > 2 else "?")


def _run_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The run a ``sync_repo`` counts into (None: sent on its own, e.g. by the API)."""
    run_id: str | None = kwargs.get("run_id", args[2] if len(args) > 2 else None)
    return run_id


def _failed(registry: str, repo: str, tag: str | None, reason: str) -> dict[str, Any]:
    result = RepoResult(registry, repo, None)
    result.failures.append(Failure(registry, repo, tag, reason))
    return summarize(result)


def _walk_args(args: tuple[Any, ...], kwargs: dict[str, Any], task_id: str) -> tuple[str, str]:
    registry = kwargs.get("registry", args[0] if args else "")
    run_id = kwargs.get("run_id", args[1] if len(args) > 1 else None)
    return registry, run_id or task_id


@shared_task(bind=True, base=_WalkTask, name=TASK_WALK)  # type: ignore[untyped-decorator]
def walk_catalog(self: _WalkTask, registry: str, run_id: str | None = None) -> dict[str, Any]:
    """One page of ``registry``'s catalog walk (runs/catalogwalk.py); without ``run_id``, a
    trigger: start a walk (its run id is this task's id) unless one is in progress, which
    makes this a no-op."""
    state = self.state
    queue = CeleryWalkQueue(self.app, state.config.syncworker.repos_per_task)
    if run_id is None:
        claim = trigger_walk(state.coord, queue, registry, self.request.id)
        if not claim.started:
            return {"registry": registry, "run_id": claim.run_id, "started": False}
        run_id = claim.run_id
    walk_ahead = state.config.syncworker.walk_ahead
    step = continue_walk(
        state.coord, state.mirror, queue, registry, run_id, state.page_size, walk_ahead
    )
    state.coord.note_walk_retry(run_id, None)  # a page went on: no wait to show
    return {"registry": registry, "run_id": run_id, "step": step.value}


@shared_task(bind=True, base=_RepoTask, name=TASK_SYNC_REPO)  # type: ignore[untyped-decorator]
def sync_repo(
    self: _RepoTask, registry: str, repo: str, run_id: str | None = None
) -> dict[str, Any]:
    """Mirror ``repo`` under its destination's lock; count it into ``run_id`` if given
    (worker/repobatch.py ``sync_counted``)."""
    return summarize(sync_counted(self.app, self.state, registry, repo, run_id))


@shared_task(bind=True, base=_BatchTask, name=TASK_SYNC_REPOS)  # type: ignore[untyped-decorator]
def sync_repos(self: _BatchTask, registry: str, repos: list[str], run_id: str) -> dict[str, Any]:
    """Mirror a walk's ``repos`` one after the other, each counted into ``run_id`` as
    ``sync_repo`` counts it (worker/repobatch.py)."""
    again = self._redelivered() or bool(self.request.retries)
    batch = (registry, repos, run_id)
    went = sync_batch(self.app, self.state, batch, again=again, task_id=self.request.id)
    return {"registry": registry, "run_id": run_id, "repos": len(repos), "went": went}


@shared_task(bind=True, base=_CheckTask, name=TASK_CHECK_REPO)  # type: ignore[untyped-decorator]
def check_repo(
    self: _CheckTask, repo: str, run_id: str, deep: bool = False, repair: bool = False
) -> dict[str, Any]:
    """Check the trees of the store's ``repo`` (``deep``: hash every blob again); with
    ``repair``, copy the broken ones again from the upstream; count it into ``run_id``."""
    state = self.state
    with checker(state.mirror, deep=deep) as trees:
        outcome = check_one(
            state.mirror, trees, repo, repair=repair, lock_wait=TASK_REPO_WAIT, raise_busy=True
        )
    record_check(state.coord, run_id, outcome)
    failures = [f.reason for f in check_failures(outcome)]
    return {"repo": repo, "ok": outcome.final.ok, "failures": failures}


@shared_task(bind=True, base=_Task, name=TASK_SWEEP)  # type: ignore[untyped-decorator]
def sweep_run(
    self: _Task, registry: str, run_id: str, previous: str | None = None
) -> dict[str, Any]:
    """If ``run_id`` has not moved since ``previous``, send its lost work again; then look
    again later, until the run is over."""
    mark, resend = stalled(self.coord, registry, run_id, previous)
    if resend.fan_out_lost:
        log.warning("check run %s: its fan-out stopped part-way; the run ends failed", run_id)
        end_lost_fan_out(self.coord, registry, run_id)
    if mark is None or resend.fan_out_lost:
        return {"run_id": run_id, "over": True}
    if resend.walk or resend.repos:
        log.warning(
            "run %s made no progress for %gs: sending again %s%d repositories",
            run_id,
            sweep_interval(self.app),
            "its walk page and " if resend.walk else "",
            len(resend.repos),
        )
    if resend.walk:
        queue = CeleryWalkQueue(self.app, config_of(self.app).syncworker.repos_per_task)
        queue.send_page(registry, run_id)
    _resend_repos(self.app, registry, run_id, resend.repos)
    start_sweep(self.app, registry, run_id, mark)
    return {"run_id": run_id, "over": False, "resent": len(resend.repos) + resend.walk}


def _resend_repos(app: Celery, registry: str, run_id: str, repos: list[str]) -> None:
    """A walk's repositories are synced again; a check's (its label in place of the
    registry) are checked again with the options the run was started with."""
    mode = check_mode(registry)
    if mode is None:
        send_each(app, TASK_SYNC_REPO, [[registry, repo, run_id] for repo in repos])
    else:
        deep, repair = mode
        send_each(app, TASK_CHECK_REPO, check_args(repos, run_id, deep=deep, repair=repair))


class _CopyFailed(Exception):
    """Leaves the image flight unfinished, so a coalesced waiter tries the copy itself."""

    def __init__(self, result: RepoResult) -> None:
        super().__init__(f"{len(result.failures)} failures")
        self.result = result


@shared_task(bind=True, base=_ImageTask, name=TASK_SYNC_IMAGE, ignore_result=False)  # type: ignore[untyped-decorator]
def sync_image(self: _ImageTask, registry: str, repo: str, reference: str) -> dict[str, Any]:
    """Mirror one tag or digest of ``repo`` with its referrers; identical requests in
    flight across the cluster make one copy (the others wait for it and return coalesced)."""
    state = self.state
    try:
        with state.coord.image_flight(registry, repo, reference) as leader:
            if not leader:
                return {**summarize(RepoResult(registry, repo, None)), "coalesced": True}
            result = state.mirror.sync_image(registry, repo, reference, lock_wait=TASK_REPO_WAIT)
            if not result.ok:
                raise _CopyFailed(result)
    except _CopyFailed as failed:
        result = failed.result
    if result.ok and result.refill_at is not None:
        # Under the same id: the caller's request follows it (deferred, then done).
        args = [registry, repo, reference]
        when = result.refill_at
        send_at(self.app, TASK_SYNC_IMAGE, args, when, task_id=self.request.id, ignore_result=False)
    return summarize(result)


def summarize(result: RepoResult) -> dict[str, Any]:
    """A task's JSON result: counts and failure causes (already redacted by the engine)."""
    return {
        "registry": result.registry,
        "repo": result.upstream_repo,
        "destination": result.dest_repo,
        "coalesced": False,
        "copied": len(result.copied),
        "skipped": len(result.skipped),
        "bytes": result.bytes_copied,
        "blobs_fetched": result.blobs_fetched,
        "failures": [str(f) for f in result.failures],
        "skip_reason": result.skip_reason,
        # Tags an upstream's pull budget deferred, and when it refills (Unix time).
        "deferred": len(result.deferred),
        "refill_at": result.refill_at,
    }
