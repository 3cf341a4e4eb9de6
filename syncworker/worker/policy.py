"""Task policy in one place: which errors are retried, after how long, and what is logged.

Task bodies stay thin (dramatiq's middleware idea): they call the engine and let errors
out. :class:`SyncTask` turns a temporary :class:`~syncworker.errors.SyncworkerError` into a
Celery retry after :func:`retry_delay`, a busy repository lock into a later retry (a duplicate
delivery that finds the lock held by a live worker is retried later, not dropped), and
gives each task a ``give_up`` hook for when it will not be retried again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.app.task import get_actual_ignore_result
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded

from syncworker.coord import LockBusy
from syncworker.coord.requests import DEFERRED, DONE, FAILED, RUNNING
from syncworker.errors import SyncworkerError
from syncworker.retry import LOCK_WAITS, TASKS, classify
from syncworker.worker.send import publishing

__all__ = [
    "MAX_DELIVERIES",
    "SyncTask",
    "brief",
    "count_end",
    "log_done",
    "log_failed",
    "retry_delay",
    "soft_limit_struck",
    "too_many_starts",
]

log = logging.getLogger(__name__)

# A message whose worker dies under it (OOM-killed, say) is redelivered; past this many
# starts that never ended it is recorded as failed instead of taking a worker down again
# and again.
MAX_DELIVERIES = 5


def retry_delay(exc: SyncworkerError, retries: int, jitter: float = 0.0) -> float:
    """The delay for ``exc`` under its named policy (``syncworker/retry.py``): a busy lock
    waits on its own curve; an upstream's ``Retry-After`` is honoured when it asks for
    longer."""
    policy = LOCK_WAITS if isinstance(exc, LockBusy) else TASKS
    return policy.delay(retries, exc, jitter)


class SyncTask(Task):  # type: ignore[misc]
    """Base of syncworker's tasks: retries, give-up accounting and one log line each.

    A task never ends with an exception of its own: whatever its body raises is either a
    retry, or a failure recorded by :meth:`give_up` (a bug's exception type named in it),
    after which the task returns and its message is acknowledged.
    """

    max_retries = TASKS.retries

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self._run(args, kwargs)
        # Celery reprs every return value for its "succeeded" line, logged or not: it gets
        # the result only when it stores it (whoever follows the task got it by progress).
        return None if get_actual_ignore_result(self, self.request) else result

    def _run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        started = time.monotonic()
        counted = False
        try:
            starts = self.started()
            counted = True
            if starts > MAX_DELIVERIES:
                return self._failed(args, kwargs, too_many_starts(starts))
            self._tell(RUNNING)
            result = super().__call__(*args, **kwargs)
        except (Retry, Ignore, Reject):
            raise
        except SyncworkerError as exc:
            return self._retry_or_fail(args, kwargs, exc)
        except SoftTimeLimitExceeded:  # its time is up: failed, not tried again
            return self._failed(args, kwargs, soft_limit_struck(self.app))
        except Exception as exc:  # a bug: logged with its traceback, recorded by name
            log.exception("%s%s: unexpected error", self.name, brief(args))
            return self._failed(args, kwargs, f"unexpected {type(exc).__name__}: {exc}")
        finally:
            if counted:
                self._ended(args)
        log_done(self.name, args, time.monotonic() - started, self.request.id)
        self._tell(_outcome(result), result)
        return result

    def started(self) -> int:
        """Count this start of the message: how many of its starts have not ended, this one
        included. Tasks that can count it (in Redis) override this and :meth:`ended`."""
        return 1

    def ended(self) -> None:
        """This start of the message ended, whatever its outcome: only a worker that dies
        under a message leaves its start counted."""

    def retrying(self, args: tuple[Any, ...], kwargs: dict[str, Any], note: str) -> None:
        """The task failed for a reason that may pass and is sent again later: ``note``
        says when, which try it was and why. Tasks whose followers should see it override
        this."""

    def progress(self, state: str, result: dict[str, Any] | None) -> None:
        """Tell whoever follows this task where it is: ``running``, then ``done`` or
        ``failed`` with its result (a retry stays ``running``). Tasks that have a follower
        (the HTTP API's requests) override this."""

    def _tell(self, state: str, result: dict[str, Any] | None = None) -> None:
        try:
            self.progress(state, result)
        except SyncworkerError as error:
            log.warning("%s: could not record that it is %s: %s", self.name, state, error)

    def _ended(self, args: tuple[Any, ...]) -> None:
        count_end(self.ended, self.name, args)

    def _retry_or_fail(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], exc: SyncworkerError
    ) -> dict[str, Any]:
        limit = LOCK_WAITS.retries if isinstance(exc, LockBusy) else self.max_retries
        if not classify(exc) or self.request.retries >= limit:
            return self._failed(args, kwargs, f"{type(exc).__name__}: {exc}")
        log.warning("%s%s: %s; retrying later", self.name, brief(args), exc)
        delay = retry_delay(exc, self.request.retries, jitter=random.random())
        note = f"try {self.request.retries + 1} of {limit + 1} failed, next in {delay:.0f}s: {exc}"
        try:
            self.retrying(args, kwargs, note)
        except SyncworkerError as error:
            log.warning("%s%s: could not record the retry: %s", self.name, brief(args), error)
        with publishing(self.name):
            raise self.retry(exc=exc, countdown=delay, max_retries=limit)

    def _failed(self, args: tuple[Any, ...], kwargs: dict[str, Any], reason: str) -> dict[str, Any]:
        log_failed(self.name, args, reason)
        return self._give_up(args, kwargs, reason)

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """What still escapes (a hard time limit kills the task outside ``__call__``)."""
        log.error("%s%s failed for good: %s", self.name, brief(args), exc)
        self._give_up(tuple(args), dict(kwargs), f"{type(exc).__name__}: {exc}")

    def _give_up(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], reason: str
    ) -> dict[str, Any]:
        try:
            result = self.give_up(args, kwargs, reason)
        except SyncworkerError as error:
            log.error("%s%s: could not record the failure: %s", self.name, brief(args), error)
            result = {"failures": [reason]}
        self._tell(FAILED, result)
        return result

    def give_up(self, args: tuple[Any, ...], kwargs: dict[str, Any], reason: str) -> dict[str, Any]:
        """Called once when the task failed and will not be retried: record ``reason``
        where the task's caller looks, and return the task's result. Tasks override it."""
        return {"failures": [reason]}


def _outcome(result: Any) -> str:
    """``failed`` for a task result that names failures; ``deferred`` for one that waits
    for a pull budget to refill (``refill_at``); else ``done``."""
    if not isinstance(result, dict):
        return DONE
    if result.get("failures"):
        return FAILED
    return DEFERRED if result.get("refill_at") else DONE


def count_end(end: Callable[[], None], task: str, args: Any) -> None:
    """Count that a start of ``task``'s work ended: a count that fails is logged, not
    raised (it only makes a later give-up come one start sooner)."""
    try:
        end()
    except SyncworkerError as error:
        log.warning("%s%s: could not count its end: %s", task, brief(args), error)


def log_done(task: str, args: Any, took: float, task_id: str | None) -> None:
    """The one line a finished piece of work logs at INFO."""
    log.info("%s%s done in %.2fs (task %s)", task, brief(args), took, task_id)


def log_failed(task: str, args: Any, reason: str) -> None:
    """The line of work that failed and will not be tried again."""
    log.error("%s%s failed for good: %s", task, brief(args), reason)


def too_many_starts(deliveries: int) -> str:
    return (
        f"started {deliveries} times without finishing (its worker died each time,"
        " e.g. killed for memory): given up"
    )


def soft_limit_struck(app: Celery) -> str:
    """The reason of work that Celery's soft time limit struck, naming the setting."""
    limit = app.conf.task_soft_time_limit
    setting = f"task_soft_time_limit ({limit:g}s)" if limit else "soft time limit"
    return f"SoftTimeLimitExceeded: Celery's {setting} struck"


def brief(args: Any) -> str:
    """Task arguments for a log line: names only (tasks never carry secrets); a list (a
    batch of repositories) by its first item and how many more."""
    return "(" + ", ".join(_item(a) for a in args) + ")"


def _item(arg: Any) -> str:
    if isinstance(arg, list) and arg:
        more = f" and {len(arg) - 1} more" if len(arg) > 1 else ""
        return f"[{arg[0]}{more}]"
    return str(arg)
