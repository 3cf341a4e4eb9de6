"""The Celery app of syncworker, built from a :class:`~syncworker.config.Config`.

``syncworker worker -c FILE`` builds it with :func:`create_app`; ``celery -A
syncworker.celeryapp`` finds the module attribute ``app``, built on first access from the
file named by ``SYNCWORKER_CONFIG``.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery

import syncworker.tasks  # noqa: F401  (registers the shared tasks on every app)
from syncworker.config import Config
from syncworker.worker.settings import celery_settings
from syncworker.worker.state import env_config

__all__ = ["create_app", "sending_app"]


def create_app(config: Config) -> Celery:
    """A Celery app for ``config``, with syncworker's tasks registered."""
    app = Celery("syncworker", set_as_current=False)
    app.conf.update(celery_settings(config))
    app.syncworker_config = config
    return app


def sending_app(config: Config) -> Celery:
    """The app of a process that sends tasks and follows them through its requests in Redis
    (``coord/requests.py``), never their results: Celery's Redis backend would otherwise
    subscribe to the result of every task sent, for the life of the process, and the
    replies nobody reads would pile up in its socket. (Workers still store results.)"""
    app = create_app(config)
    app.conf.result_backend = None
    return app


_app: Celery | None = None
_app_guard = threading.Lock()


def __getattr__(name: str) -> Any:
    """``celery -A syncworker.celeryapp`` reads ``app``: built once, from the environment."""
    global _app
    if name != "app":
        raise AttributeError(name)
    with _app_guard:
        if _app is None:
            _app = create_app(env_config())
        return _app
