"""Celery's own log handlers (worker, beat) in our format: every handler redacted, JSON
lines when asked, and each task's lines naming its task id, registry, repository and run."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_postrun,
    task_prerun,
)

from syncworker.observe.logs import JsonFormatter, bind_context, clear_context, redact_handlers

__all__ = ["celery_log_format", "quiet_banner"]

# Task arguments -> the context fields they fill.
_TASK_FIELDS = {"registry": "registry", "repo": "repository", "run_id": "run_id"}
# Celery's INFO lines of every task: "received" (the consumer) and "succeeded in ...: result"
# (the pool process). Our policy logs one line per task ("done in", with its task id), so
# these two are shown only with -v or a DEBUG log level: at a thousand tasks a minute they
# were two of every three lines, and CPU of the worker's.
_PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def celery_log_format(log_format: str, per_task_lines: bool = False) -> None:
    """Apply ``log_format`` to the handlers Celery sets up, and keep Celery's own per-task
    INFO lines out unless ``per_task_lines``; connected before the pool forks, so its
    children do the same."""

    def setup(logger: logging.Logger, loglevel: int = logging.INFO, **_: Any) -> None:
        redact_handlers(logger)
        if not per_task_lines and loglevel > logging.DEBUG:
            for name in _PER_TASK_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
        if log_format == "json":
            for handler in logger.handlers:
                handler.setFormatter(JsonFormatter())

    after_setup_logger.connect(setup, weak=False)
    after_setup_task_logger.connect(setup, weak=False)
    if log_format == "json":
        task_prerun.connect(_bind_task, weak=False)
        task_postrun.connect(_unbind_task, weak=False)


def quiet_banner(log_format: str) -> list[str]:
    """Celery's options before the sub-command: no start-up banner (printed, not logged)
    when every line must be JSON."""
    return ["--quiet"] if log_format == "json" else []


def _bind_task(task_id: str, task: Any, args: Any = (), kwargs: Any = None, **_: Any) -> None:
    try:
        named = inspect.signature(task.run).bind_partial(*args, **(kwargs or {})).arguments
    except TypeError:  # arguments that do not fit: the task will say so itself
        named = {}
    fields = {field: str(named[arg]) for arg, field in _TASK_FIELDS.items() if named.get(arg)}
    bind_context(task_id=task_id, **fields)


def _unbind_task(**_: Any) -> None:
    clear_context()
