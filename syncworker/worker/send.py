"""Sending tasks: the one place where broker errors are translated, the sweep's timer, and
the catalog walk's messages (:class:`CeleryWalkQueue`)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from celery import Celery
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from syncworker.errors import CoordError
from syncworker.runs.sweep import sweep_seconds
from syncworker.worker.settings import VISIBILITY_TIMEOUT
from syncworker.worker.tasknames import QUEUE_REPO, TASK_SWEEP, TASK_SYNC_REPOS, TASK_WALK

__all__ = [
    "CeleryWalkQueue",
    "PUBLISH_BATCH",
    "publishing",
    "queue_length",
    "send",
    "send_at",
    "send_each",
    "start_sweep",
    "sweep_interval",
]

# Messages per pipelined write to the broker: a whole catalog page (at most 1000 names) in
# one round trip, each message well under a kilobyte.
PUBLISH_BATCH = 1000


@contextmanager
def publishing(task: str) -> Iterator[None]:
    """The one place where publishing errors are translated: a broker that cannot take a
    message is a temporary :class:`CoordError`, so the sending task is retried later (or
    its run's sweep sends the work again) instead of failing for good."""
    try:
        yield
    # AttributeError: kombu's Redis channel, publishing while it reconnects after the
    # server restarted, reaches for a connection it has already dropped.
    except (KombuError, RedisError, OSError, AttributeError) as exc:
        raise CoordError(f"could not send {task} to the broker: {type(exc).__name__}") from exc


def send(app: Celery, task: str, args: list[Any], **options: Any) -> None:
    """Publish ``task`` with ``args`` (see :func:`publishing`)."""
    with publishing(task):
        app.send_task(task, args=args, **options)


def send_each(app: Celery, task: str, arg_lists: Sequence[list[Any]], **options: Any) -> None:
    """Publish ``task`` once per argument list, over one producer connection, pipelined in
    batches of PUBLISH_BATCH (kombu's ``Producer.batch``; a transport that cannot batch
    publishes them one by one on that connection). Every message is with the broker when
    this returns; an error means some may not be (see :func:`publishing`). Nobody waits on
    these results (runs count in Redis): none is stored, and the sender does not subscribe
    to each one's result channel."""
    if not arg_lists:
        return
    with (
        publishing(task),
        app.producer_or_acquire() as producer,
        producer.batch(max_size=PUBLISH_BATCH),
    ):
        for args in arg_lists:
            app.send_task(task, args=args, producer=producer, ignore_result=True, **options)


def queue_length(app: Celery, queue: str) -> int:
    """Messages waiting in ``queue`` (not those a worker holds): a passive declare, which
    kombu's Redis transport answers by the lengths of the queue's lists and RabbitMQ by the
    queue's ready count. 0 for a queue that does not exist (Redis drops an empty list)."""
    with publishing(f"a look at {queue}"), app.pool.acquire(block=True) as connection:
        channel = connection.channel()
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except connection.channel_errors:
            return 0
        finally:
            channel.close()


def start_sweep(app: Celery, registry: str, run_id: str, previous: str | None = None) -> None:
    """Look at ``run_id`` again in one sweep interval (runs/sweep.py)."""
    args = [registry, run_id, previous]
    send(app, TASK_SWEEP, args, countdown=sweep_interval(app), ignore_result=True)


def send_at(app: Celery, task: str, args: list[Any], when: float, **options: Any) -> None:
    """Publish ``task`` to run at Unix time ``when``, or sooner: a countdown message waits
    unacknowledged in a worker, so one is never held past half the visibility timeout (it
    would be handed out again); the task finds out whether it is time yet."""
    visibility = app.conf.broker_transport_options.get("visibility_timeout", VISIBILITY_TIMEOUT)
    countdown = min(max(when - time.time(), 0.0), float(visibility) / 2)
    send(app, task, args, countdown=countdown, **{"ignore_result": True, **options})


def sweep_interval(app: Celery) -> float:
    """The sweep interval, kept under half the visibility timeout: a countdown message waits
    unacknowledged in a worker, and one held past that timeout would be handed out again."""
    visibility = app.conf.broker_transport_options.get("visibility_timeout", VISIBILITY_TIMEOUT)
    return min(sweep_seconds(), float(visibility) / 2)


class CeleryWalkQueue:
    """A catalog walk's messages (``runs/catalogwalk.py`` ``WalkQueue``) as Celery tasks:
    ``walk_catalog`` pages, and ``sync_repos`` messages of ``repos_per_task`` repositories."""

    def __init__(self, app: Celery, repos_per_task: int) -> None:
        self._app = app
        self._per_message = repos_per_task

    def send_page(
        self, registry: str, run_id: str, *, delay: float = 0.0, first: bool = False
    ) -> None:
        # Nobody waits on a page's result: asking for it would subscribe a long-lived
        # sender (the API) to a result channel that never gets a message.
        # The first page goes under the run id, as beat's trigger does.
        timing = {"task_id": run_id} if first else {"countdown": delay or None}
        send(self._app, TASK_WALK, [registry, run_id], ignore_result=True, **timing)

    def send_repos(self, registry: str, repos: Sequence[str], run_id: str) -> None:
        size = self._per_message
        batches = [list(repos[i : i + size]) for i in range(0, len(repos), size)]
        send_each(self._app, TASK_SYNC_REPOS, [[registry, batch, run_id] for batch in batches])

    def repos_waiting(self) -> int:
        """Each waiting message counted as a full batch (a lone ``sync_repo`` or
        ``check_repo`` too): a count of messages is what the broker answers cheaply."""
        return queue_length(self._app, QUEUE_REPO) * self._per_message

    def start_sweep(self, registry: str, run_id: str) -> None:
        start_sweep(self._app, registry, run_id)
