"""How a pull-through copy is made: by the workers (``sync_image``, behind the cluster's
image single-flight) when Redis is configured, else by a :class:`Mirror` in this process."""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING

from syncworker.config import Config
from syncworker.runtime import Runtime
from syncworker.serve.ondemand import Copy

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["COPY_LIMIT", "POLL_SECONDS", "in_process", "through_workers"]

# A copy is waited for this long at most (the client was answered long before: its wait
# is syncworker.serve.onDemandTimeout); a lost task frees its flight after it.
COPY_LIMIT = 3600.0
# How often the state of a sent task is read (a Redis GET).
POLL_SECONDS = 0.2
_DONE = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


def in_process(runtime: Runtime) -> Copy:
    """Copies by the runtime's Mirror (opened here), with this process's locks."""
    mirror = runtime.open_mirror()

    def copy(registry: str, repo: str, reference: str) -> None:
        mirror.sync_image(registry, repo, reference)

    return copy


def through_workers(config: Config, stopping: threading.Event) -> Copy:
    """Copies by the workers: ``sync_image`` sent to their on-demand queue, its state read
    until it has ended, or until ``stopping`` is set (the server stops: the task goes on in
    the workers). Identical copies sent by several replicas make one (the task's image
    single-flight)."""
    from syncworker.celeryapp import create_app
    from syncworker.worker.send import send
    from syncworker.worker.tasknames import TASK_SYNC_IMAGE

    app = create_app(config)

    def copy(registry: str, repo: str, reference: str) -> None:
        task_id = str(uuid.uuid4())
        send(app, TASK_SYNC_IMAGE, [registry, repo, reference], task_id=task_id)
        _wait(app, task_id, stopping)

    return copy


def _wait(app: Celery, task_id: str, stopping: threading.Event) -> None:
    """Until the task has ended (its state read, not subscribed to: the result backend's
    subscriber is not safe to share among threads), or ``stopping`` is set."""
    deadline = time.monotonic() + COPY_LIMIT
    result = app.AsyncResult(task_id)
    while time.monotonic() < deadline:
        if result.state in _DONE:
            return
        if stopping.wait(POLL_SECONDS):
            return
