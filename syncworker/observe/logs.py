"""Log lines for people or for an aggregator: text, or one JSON object per line with the
registry, repository, run and task a line belongs to. Every handler gets the redaction
filter, so secrets stay out of both.

The context (registry, repository, run id, task id) is held in a context variable, bound
per thread by whoever starts the work: a Celery task's signals (and a batch, for each of its
repositories), or :class:`LogContext` as an observer of the engine's events in
``syncworker sync``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from syncworker.redact import redact_text

if TYPE_CHECKING:  # every command sets up its logging here; only `sync` loads the engine
    from syncworker.engine import RepoResult
    from syncworker.engine.events import BlobOutcome, ImageOutcome, WaitKind
    from syncworker.registry.stats import RequestHook

__all__ = [
    "CONTEXT_FIELDS",
    "JsonFormatter",
    "LogContext",
    "RedactingFilter",
    "TextFormatter",
    "bind_context",
    "clear_context",
    "more_context",
    "redact_handlers",
]

#: The context fields a JSON line carries when they are known.
CONTEXT_FIELDS = ("registry", "repository", "run_id", "task_id")

# (field, value) pairs: an immutable default, shared safely by every thread.
_context: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "syncworker_log_context", default=()
)


def bind_context(**fields: str | None) -> None:
    """Name the work this thread (or task) does from now on."""
    _context.set(tuple((k, v) for k, v in fields.items() if v and k in CONTEXT_FIELDS))


def clear_context() -> None:
    _context.set(())


@contextmanager
def more_context(**fields: str) -> Iterator[None]:
    """Name more of the work this thread does, for the block: what was bound stays, but for
    the fields given again."""
    kept = tuple((k, v) for k, v in _context.get() if k not in fields)
    added = tuple((k, v) for k, v in fields.items() if v and k in CONTEXT_FIELDS)
    token = _context.set(kept + added)
    try:
        yield
    finally:
        _context.reset(token)


class RedactingFilter(logging.Filter):
    """Redacts a record's message before any handler formats it; attached to every handler
    (ours and Celery's), so no output escapes the redaction rules."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def redact_handlers(logger: logging.Logger) -> None:
    """Attach a :class:`RedactingFilter` to each handler of ``logger`` that lacks one."""
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


class TextFormatter(logging.Formatter):
    """The usual ``time level logger: message`` lines; tracebacks only when ``tracebacks``
    (``-vv``)."""

    def __init__(self, fmt: str, *, tracebacks: bool = True) -> None:
        super().__init__(fmt)
        self._tracebacks = tracebacks

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's API
        return super().formatException(ei) if self._tracebacks else ""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the bound
    context, and the exception's type and text when there is one (its traceback with
    ``tracebacks``)."""

    def __init__(self, *, tracebacks: bool = True) -> None:
        super().__init__()
        self._tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **dict(_context.get()),
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line["error"] = redact_text(f"{type(exc).__name__}: {exc}")
            if self._tracebacks:
                line["traceback"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


def _iso(created: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int(created % 1 * 1000):03d}Z"


class LogContext:
    """Binds the registry and repository to the thread that syncs a repository (the engine
    tells of its start and end in that thread)."""

    def requests(self, registry: str) -> RequestHook | None:
        return None

    def repo_started(self, registry: str, repo: str) -> None:
        bind_context(registry=registry, repository=repo)

    def repo_done(self, result: RepoResult, seconds: float) -> None:
        clear_context()

    def blob_done(self, registry: str, outcome: BlobOutcome, size: int, seconds: float) -> None:
        pass

    def image_done(self, registry: str, repo: str, outcome: ImageOutcome, size: int) -> None:
        pass

    def waited(self, registry: str, kind: WaitKind, seconds: float) -> None:
        pass

    def repos_listed(self, registry: str, count: int, complete: bool) -> None:
        pass
