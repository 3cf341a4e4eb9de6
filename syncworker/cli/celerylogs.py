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


def celery_log_format(log_format: str) -> None:
    """Apply ``log_format`` to the handlers Celery sets up; connected before the pool forks,
    so its children do the same."""

    def setup(logger: logging.Logger, **_: Any) -> None:
        redact_handlers(logger)
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
