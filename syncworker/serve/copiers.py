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
    from syncworker.coord import Coordinator

__all__ = ["COPY_LIMIT", "POLL_SECONDS", "in_process", "through_workers"]

# A copy is waited for this long at most (the client was answered long before: its wait
# is syncworker.serve.onDemandTimeout); a lost task frees its flight after it.
COPY_LIMIT = 3600.0
# How often the request of a sent task is read (a Redis HGETALL).
POLL_SECONDS = 0.2


def in_process(runtime: Runtime) -> Copy:
    """Copies by the runtime's Mirror (opened here), with this process's locks."""
    mirror = runtime.open_mirror()

    def copy(registry: str, repo: str, reference: str) -> None:
        mirror.sync_image(registry, repo, reference)

    return copy


def through_workers(config: Config, coord: Coordinator, stopping: threading.Event) -> Copy:
    """Copies by the workers: ``sync_image`` sent to their on-demand queue under a request
    (``coord/requests.py``, as the HTTP API sends it), which is read until the task has
    ended, or until ``stopping`` is set (the server stops: the task goes on in the
    workers). Identical copies sent by several replicas make one (the task's image
    single-flight)."""
    from syncworker.celeryapp import sending_app
    from syncworker.worker.send import send
    from syncworker.worker.tasknames import TASK_SYNC_IMAGE

    app = sending_app(config)

    def copy(registry: str, repo: str, reference: str) -> None:
        task_id = str(uuid.uuid4())
        with coord.sending_request(task_id, "image", registry, repo, reference):
            send(app, TASK_SYNC_IMAGE, [registry, repo, reference], task_id=task_id)
        _wait(coord, task_id, stopping)

    return copy


def _wait(coord: Coordinator, task_id: str, stopping: threading.Event) -> None:
    """Until the task's request has ended (or is gone: expired), or ``stopping`` is set."""
    deadline = time.monotonic() + COPY_LIMIT
    while time.monotonic() < deadline:
        status = coord.request_status(task_id)
        if status is None or status.ended:
            return
        if stopping.wait(POLL_SECONDS):
            return
