"""Start a check of the store on the workers: one ``check_repo`` per repository, a run
that ``syncworker status`` shows, and its sweep (runs/storecheck.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from celery import Celery

from syncworker.coord import FAILED, Coordinator
from syncworker.errors import CoordError
from syncworker.runs.storecheck import check_label, fan_out_check
from syncworker.worker.send import send_each, start_sweep
from syncworker.worker.tasknames import TASK_CHECK_REPO

__all__ = ["check_args", "start_check"]


def check_args(
    repos: Sequence[str], run_id: str, *, deep: bool, repair: bool
) -> list[list[object]]:
    """The arguments of ``check_repo`` for each of ``repos``."""
    return [[repo, run_id, deep, repair] for repo in repos]


def start_check(
    app: Celery, coord: Coordinator, repos: Sequence[str], *, deep: bool, repair: bool
) -> str:
    """Send a check of each of ``repos`` to the workers; the run's id. If the broker
    refuses, the run ends failed with the cause (the repositories already sent are still
    checked, and counted into it no more)."""
    run_id = str(uuid.uuid4())
    label = check_label(deep=deep, repair=repair)

    def enqueue(batch: Sequence[str], run_id: str) -> None:
        send_each(app, TASK_CHECK_REPO, check_args(batch, run_id, deep=deep, repair=repair))

    try:
        fan_out_check(coord, label, run_id, repos, enqueue, lambda: start_sweep(app, label, run_id))
    except CoordError as exc:
        coord.record_failure(run_id, label, None, str(exc))
        coord.finish_run(run_id, FAILED)
        raise
    return run_id
