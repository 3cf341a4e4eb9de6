"""The Celery app of syncworker, built from a :class:`~syncworker.config.Config`.

``syncworker worker -c FILE`` builds it with :func:`create_app`; ``celery -A
syncworker.celeryapp`` finds the module attribute ``app``, built on first access from the
file named by ``SYNCWORKER_CONFIG``. Our defaults (issue 3, "Celery") come first, then the
config section ``syncworker.celery`` is merged over them, so every setting can be changed
without code (e.g. ``broker_url: amqp://...`` for RabbitMQ).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from syncworker.config import Config, load_config
from syncworker.errors import ConfigError
from syncworker.worker.schedule import beat_schedule

__all__ = [
    "CONFIG_ENV",
    "HARD_TIME_LIMIT",
    "QUEUE_ONDEMAND",
    "QUEUE_REPO",
    "QUEUE_WALK",
    "REDBEAT_PREFIX",
    "RESTORE_SECONDS",
    "SOFT_TIME_LIMIT",
    "TASK_SWEEP",
    "TASK_SYNC_IMAGE",
    "TASK_SYNC_REPO",
    "TASK_WALK",
    "VISIBILITY_TIMEOUT",
    "celery_settings",
    "config_of",
    "create_app",
]

CONFIG_ENV = "SYNCWORKER_CONFIG"

# Public task names (issue 3): other services call them with send_task.
TASK_WALK = "syncworker.walk_catalog"
TASK_SYNC_REPO = "syncworker.sync_repo"
TASK_SYNC_IMAGE = "syncworker.sync_image"
# Internal: re-sends what a stalled run lost (worker/sweep.py).
TASK_SWEEP = "syncworker.sweep_run"

# Separate queues so that a nightly mass run (thousands of sync_repo) never starves a
# walk's next page nor an on-demand request (issue 3, "Queues").
QUEUE_WALK = "syncworker.walk"
QUEUE_REPO = "syncworker.repo"
QUEUE_ONDEMAND = "syncworker.ondemand"
ROUTES = {
    TASK_WALK: {"queue": QUEUE_WALK},
    TASK_SWEEP: {"queue": QUEUE_WALK},
    TASK_SYNC_REPO: {"queue": QUEUE_REPO},
    TASK_SYNC_IMAGE: {"queue": QUEUE_ONDEMAND},
}

# A repository with hundreds of multi-GiB tags can take hours: the soft limit raises in the
# task (it is counted failed and retried by the next run), the hard limit kills a stuck one.
SOFT_TIME_LIMIT = 3 * 3600
HARD_TIME_LIMIT = SOFT_TIME_LIMIT + 600
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
# RedBeat keeps the schedule and its single-beat lock under our key prefix.
REDBEAT_PREFIX = "syncworker:redbeat"
# Only one beat replica holds this lock and fires; another takes over within this long.
REDBEAT_LOCK_TIMEOUT = 60


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
        # so a long repo does not sit on others' work (DESIGN.md "Delivery guarantees").
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": SOFT_TIME_LIMIT,
        "task_time_limit": HARD_TIME_LIMIT,
        "task_ignore_result": True,
        "result_expires": RESULT_EXPIRES,
        "task_queues": [_queue(name) for name in (QUEUE_WALK, QUEUE_REPO, QUEUE_ONDEMAND)],
        "task_default_queue": QUEUE_REPO,
        "task_routes": ROUTES,
        # Let a task in progress finish when the broker connection drops: cancelling it
        # acknowledges its message on reconnect, losing it (seen with a Redis restart).
        # Its ack then fails, and the message comes back after the visibility timeout: a
        # duplicate that every task absorbs.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "beat_scheduler": "redbeat.RedBeatScheduler",
        "redbeat_redis_url": url,
        "redbeat_key_prefix": REDBEAT_PREFIX,
        "redbeat_lock_timeout": REDBEAT_LOCK_TIMEOUT,
        "beat_schedule": beat_schedule(config, TASK_WALK, QUEUE_WALK),
    }
    return _merge(settings, config.syncworker.celery)


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


def create_app(config: Config) -> Celery:
    """A Celery app for ``config``, with syncworker's three tasks registered."""
    import syncworker.tasks  # noqa: F401  (registers the shared tasks on every app)

    app = Celery("syncworker", set_as_current=False)
    app.conf.update(celery_settings(config))
    app.syncworker_config = config
    return app


def config_of(app: Celery) -> Config:
    """The syncworker configuration ``app`` was built from."""
    config = getattr(app, "syncworker_config", None)
    if config is None:  # an app not made by create_app (e.g. the default app)
        return _env_config()
    assert isinstance(config, Config)
    return config


def _env_config() -> Config:
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(CONFIG_ENV, "not set: run `syncworker worker -c FILE`")
    return load_config(path)


_app: Celery | None = None
_app_guard = threading.Lock()


def __getattr__(name: str) -> Any:
    """``celery -A syncworker.celeryapp`` reads ``app``: built once, from the environment."""
    global _app
    if name != "app":
        raise AttributeError(name)
    with _app_guard:
        if _app is None:
            _app = create_app(_env_config())
        return _app
