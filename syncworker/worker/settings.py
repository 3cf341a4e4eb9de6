"""Our Celery configuration: limits, acknowledgement, queues, beat; the config section
``syncworker.celery`` is merged over it, so every setting can be changed without code (e.g.
``broker_url: amqp://...`` for RabbitMQ)."""

from __future__ import annotations

from typing import Any

from kombu.entity import Exchange, Queue

from syncworker.config import Config
from syncworker.config.model import HARD_TIME_LIMIT, SOFT_TIME_LIMIT
from syncworker.coord.keys import Keys
from syncworker.worker.redisbroker import REDIS_SCHEMES
from syncworker.worker.schedule import beat_schedule
from syncworker.worker.tasknames import QUEUE_ONDEMAND, QUEUE_REPO, QUEUE_WALK, ROUTES, TASK_WALK

__all__ = [
    "HARD_TIME_LIMIT",
    "REDBEAT_PREFIX",
    "RESTORE_SECONDS",
    "SOFT_TIME_LIMIT",
    "VISIBILITY_TIMEOUT",
    "celery_settings",
]

# Redis redelivers an unacknowledged message after this long (acks_late). It must exceed
# the longest task, or a running sync_repo is handed to a second worker; the price is that
# a SIGKILLed worker's task waits this long before it is redone.
VISIBILITY_TIMEOUT = HARD_TIME_LIMIT + 600
# kombu's Redis transport looks for messages unacknowledged past the visibility timeout only
# every unacked_restore_interval x unacked_restore_throttle seconds (10 x 10 by default), so
# a killed worker's task came back up to 100 s after its timeout. Every RESTORE_SECONDS
# instead (a ZRANGE on the unacked index per worker). A worker killed while holding the
# restore mutex blocks restores for RESTORE_MUTEX_SECONDS (kombu's default: 300).
RESTORE_SECONDS = 5
RESTORE_MUTEX_SECONDS = 30
REDIS_RESTORE = {
    "unacked_restore_interval": RESTORE_SECONDS,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": RESTORE_MUTEX_SECONDS,
}
# Publishing retries for about 15 s (a Redis restart or failover), then the sending task
# is retried by its own policy.
PUBLISH_RETRY_POLICY = {
    "max_retries": 10,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 2.0,
}
# Results are kept only for sync_image (callers may wait on it); a day is plenty.
RESULT_EXPIRES = 24 * 3600
# kombu's Redis transport with one client per connection pool (worker/redisbroker.py).
REDIS_TRANSPORT = "syncworker.worker.redisbroker:Transport"
# RedBeat keeps the schedule and its single-beat lock under our key prefix.
REDBEAT_PREFIX = Keys().redbeat()
# Only one beat replica holds this lock and fires; another takes over within this long.
# Beat's longest sleep is derived from it (worker/scheduler.py), whatever the schedules.
REDBEAT_LOCK_TIMEOUT = 60
# RedBeat's own Redis client. Given explicitly: RedBeat otherwise falls back to
# broker_transport_options (the broker's, not a client's) and warns that it will stop.
# The timeouts make a Redis that stops answering (a partition, no reset) an error beat logs
# and retries at its next tick, instead of a call that blocks for the TCP timeout.
REDBEAT_REDIS_OPTIONS = {"socket_timeout": 10, "socket_connect_timeout": 10}


def _queue(name: str) -> Queue:
    """A durable queue behind a direct exchange of the same name (RabbitMQ and Redis alike)."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]


def celery_settings(config: Config) -> dict[str, Any]:
    """Our Celery configuration, with ``syncworker.celery`` merged over it."""
    url = config.syncworker.require_redis_url("a Celery worker")
    transport = {"visibility_timeout": VISIBILITY_TIMEOUT}
    settings: dict[str, Any] = {
        "broker_url": url,
        "result_backend": url,
        "broker_transport_options": {**transport, **REDIS_RESTORE},
        "result_backend_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        # A task that sends the next page or a fan-out rides out a broker restart.
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        # JSON only: a pickled message from the broker would be code execution.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A killed worker's task is redelivered, and a worker holds one message at a time
        # so a long repo does not sit on others' work (docs/ARCHITECTURE.md "Delivery guarantees").
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": SOFT_TIME_LIMIT,
        "task_time_limit": HARD_TIME_LIMIT,
        # Nobody waits on a walk page's or a repository's result (runs are counted in
        # Redis), so none is stored; sync_image, which callers wait on, asks for its own.
        "task_ignore_result": True,
        "result_expires": RESULT_EXPIRES,
        # Task events cost the broker a message per task state: only when asked for
        # (``worker_send_task_events: true`` in ``syncworker.celery``, or ``-E``, for Flower).
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "task_queues": [_queue(name) for name in (QUEUE_WALK, QUEUE_REPO, QUEUE_ONDEMAND)],
        "task_default_queue": QUEUE_REPO,
        "task_routes": ROUTES,
        # Let a task in progress finish when the broker connection drops: cancelling it
        # acknowledges its message on reconnect, losing it (seen with a Redis restart).
        # Its ack then fails, and the message comes back after the visibility timeout: a
        # duplicate that every task absorbs.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "beat_scheduler": "syncworker.worker.scheduler:Scheduler",
        "redbeat_redis_url": url,
        "redbeat_redis_options": REDBEAT_REDIS_OPTIONS,
        "redbeat_key_prefix": REDBEAT_PREFIX,
        "redbeat_lock_timeout": REDBEAT_LOCK_TIMEOUT,
        "beat_schedule": beat_schedule(config, TASK_WALK, QUEUE_WALK),
    }
    merged = _merge(settings, config.syncworker.celery)
    if merged.get("broker_transport") is None and _scheme(merged["broker_url"]) in REDIS_SCHEMES:
        merged["broker_transport"] = REDIS_TRANSPORT
    return merged


def _scheme(url: Any) -> str:
    """The scheme of a broker URL (of the first one, for a failover list)."""
    first = url[0] if isinstance(url, list | tuple) and url else url
    return str(first).split(";", 1)[0].partition("://")[0].lower()


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` wins; a mapping in both is merged one level down, so that
    ``broker_transport_options: {visibility_timeout: 600}`` keeps our other options."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged
