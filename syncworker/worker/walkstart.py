"""Start a registry's catalog walk on demand: claim it, then send its first page and sweep."""

from __future__ import annotations

import uuid

from celery import Celery

from syncworker.coord import FAILED, Coordinator
from syncworker.errors import CoordError
from syncworker.runs.catalogwalk import CATALOG_FAILURE, Claim, claim_walk
from syncworker.worker.send import send, start_sweep
from syncworker.worker.tasknames import TASK_WALK

__all__ = ["start_walk"]


def start_walk(app: Celery, coord: Coordinator, registry: str) -> Claim:
    """Start a walk of ``registry`` unless one is in progress (whose run it then names);
    ``syncworker trigger`` and ``syncworker api`` start walks through this."""
    claim = claim_walk(coord, registry, str(uuid.uuid4()))
    if claim.started:
        _send_walk(app, coord, registry, claim.run_id)
    return claim


def _send_walk(app: Celery, coord: Coordinator, registry: str, run_id: str) -> None:
    """Send the walk's first page (its task id is the run id, as for walks triggered by
    beat) and its sweep; if the broker refuses, end the walk now, or it would block every
    trigger of this registry until its marker expires."""
    try:
        send(app, TASK_WALK, [registry, run_id], task_id=run_id)
        start_sweep(app, registry, run_id)
    except CoordError as exc:
        coord.record_failure(run_id, CATALOG_FAILURE, None, str(exc))
        coord.finish_run(run_id, FAILED)  # first: ending the walk would finish it as done
        coord.end_walk(registry, run_id)
        raise
