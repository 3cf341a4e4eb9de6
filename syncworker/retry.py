"""Retries for the whole package: what is temporary, how long to wait, and the one loop.

Every retry in syncworker goes through here: the registry client's requests (manifests,
lists, tokens), the blob copier's whole streams, a registry destination's uploads, the S3
store and the ECR login (which say what their failures were, and ask :func:`classify`),
and the Celery tasks' re-deliveries (``worker/policy.py``). None nests inside another: a
blob stream is opened with a single attempt and retried only as a whole, so ``n`` retries
cost at most ``n + 1`` requests.

- :func:`classify` is the one answer to "may the same operation succeed later?": no
  answer at all (a connection failure, a timeout, Redis unreachable, a busy lock) is
  temporary; an answer is temporary when its status or its error code says "later" (one
  table of HTTP statuses, the distribution spec's and AWS's codes); the job's own
  deadline never is.
- :class:`Policy` names how often and how long: :data:`REQUESTS` (one upstream's
  requests, tuned per upstream by its options), :data:`TASKS` and :data:`LOCK_WAITS` (a
  Celery task's re-deliveries). :meth:`Policy.run` is the loop; a wait that would end past
  the caller's deadline is not started, so no retry overshoots ``syncTimeout``.
- :func:`backoff_delay` is pure: doubling from ``base`` up to ``cap``, a random ``jitter``
  taking up to half off (so that clients failed together by one outage come back apart),
  and a server's ``Retry-After`` (:func:`parse_retry_after`) honoured when it asks for
  longer, still under the cap.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import NoReturn, Protocol, TypeVar

from syncworker.errors import (
    CoordError,
    DeadlineExceededError,
    DigestMismatchError,
    LockBusy,
    RegistryError,
    StoreError,
    SyncworkerError,
    TransportError,
)

__all__ = [
    "LOCK_WAITS",
    "MAX_RETRY_DELAY",
    "REQUESTS",
    "TASKS",
    "Bound",
    "Policy",
    "Retrying",
    "backoff_delay",
    "classify",
    "parse_retry_after",
    "temporary_answer",
    "worth_refetching",
]

# No single wait longer than this, whatever the server asks: a worker stuck for an hour
# on one request is worse than one more failed attempt.
MAX_RETRY_DELAY = 60.0
# 2**62 seconds is already beyond any cap; a larger exponent would overflow a float.
_MAX_EXPONENT = 62
# Statuses that say "later": the server or something in front of it is overloaded or
# restarting (distribution-spec leaves 5xx semantics to HTTP; 408/425/429 are explicit
# asks to come back later).
TEMPORARY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Error codes that say "later" even when a proxy turns them into an odd status: the
# distribution spec's, and AWS's (S3, ECR's GetAuthorizationToken).
TEMPORARY_CODES = frozenset(
    {
        "TOOMANYREQUESTS",
        "UNAVAILABLE",
        "SlowDown",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "ThrottlingException",
        "ServiceUnavailableException",
        "ServerException",
        "RequestLimitExceeded",
    }
)
# Failures without an answer: trying again later may find the other side back.
_UNANSWERED = (TransportError, CoordError, LockBusy)
_T = TypeVar("_T")


def temporary_answer(status: int | None, codes: tuple[str, ...] = ()) -> bool:
    """Whether an answer with ``status`` (None: not known) and these error codes means
    "later" rather than "never"."""
    return (status is not None and status in TEMPORARY_STATUSES) or any(
        c in TEMPORARY_CODES for c in codes
    )


def classify(error: BaseException | None) -> bool:
    """Whether the same operation may succeed later: connection failures, timeouts, 408,
    429, 5xx, a busy lock, an unreachable Redis; never 401/403/404, refused content, or
    the job's deadline. A store's failure is as temporary as the answer (or the error of
    ours) that caused it."""
    if isinstance(error, DeadlineExceededError):
        return False
    if isinstance(error, _UNANSWERED):
        return True
    if isinstance(error, RegistryError):
        return temporary_answer(error.status, error.codes)
    if isinstance(error, StoreError):
        if error.unanswered:
            return True
        if error.status is not None or error.codes:
            return temporary_answer(error.status, error.codes)
        return classify(error.__cause__)
    return False


def worth_refetching(error: BaseException) -> bool:
    """For content checked against its digest (blob streams, manifests): temporary, or
    bytes that did not hash to their digest (a flipped byte from a proxy or CDN)."""
    return classify(error) or isinstance(error, DigestMismatchError)


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float = MAX_RETRY_DELAY,
    retry_after: float | None = None,
    jitter: float = 0.0,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    ``min(cap, base * 2**attempt)``, shortened by up to half by ``jitter`` in [0, 1);
    then at least ``retry_after`` (a negative one counts as 0), and never over ``cap``.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    delay = min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT)) * (1.0 - jitter / 2.0)
    if retry_after is not None:
        delay = max(delay, min(max(retry_after, 0.0), cap))
    return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` (RFC 9110 section 10.2.3: delay-seconds or an HTTP-date) as seconds
    from ``now`` (a Unix time), or None if absent or garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
        seconds = when.timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None or not math.isfinite(seconds):  # an HTTP-date is always GMT
        return None
    return max(seconds, 0.0)


class Bound(Protocol):
    """A deadline a wait must end before (``registry.Deadline``)."""

    def check_wait(self, seconds: float, what: str) -> None:
        """Raise :class:`DeadlineExceededError` if waiting ``seconds`` would end past it."""
        ...


@dataclass(frozen=True)
class Policy:
    """How often and after how long an operation is tried again, and which errors are
    worth it: ``retries`` after the first attempt, waits doubling from ``base`` up to
    ``cap``."""

    name: str
    retries: int
    base: float
    cap: float = MAX_RETRY_DELAY
    worth: Callable[[BaseException], bool] = classify

    def but(self, *, retries: int, base: float) -> Policy:
        """This policy with another count and base (an upstream's own settings)."""
        return dataclasses.replace(self, retries=retries, base=base)

    def delay(self, attempt: int, error: BaseException, jitter: float = 0.0) -> float:
        """The wait before retry number ``attempt`` after ``error`` (its ``Retry-After``
        honoured when longer)."""
        retry_after = error.retry_after if isinstance(error, RegistryError) else None
        return backoff_delay(
            attempt, base=self.base, cap=self.cap, retry_after=retry_after, jitter=jitter
        )

    def run(
        self,
        call: Callable[[], _T],
        *,
        sleep: Callable[[float], None],
        deadline: Bound | None = None,
        jitter: Callable[[], float] = random.random,
        on_retry: Callable[[SyncworkerError, float], None] | None = None,
    ) -> _T:
        """``call()``, tried again up to ``retries`` times while its error is worth it.

        A wait that would end past ``deadline`` is not started: the deadline's error is
        raised instead. ``on_retry(error, delay)`` is told of each retry before its wait.
        """
        for attempt in itertools.count():
            try:
                return call()
            except SyncworkerError as exc:
                if not self.worth(exc):
                    raise
                if attempt >= self.retries:
                    _raise_after_attempts(exc, attempt + 1)
                delay = self.delay(attempt, exc, jitter())
                if deadline is not None:
                    deadline.check_wait(delay, str(exc))
                if on_retry is not None:
                    on_retry(exc, delay)
                sleep(delay)
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class Retrying:
    """A policy as one caller applies it: under its deadline, each retry counted
    (``counted``: a client's retry counter and metrics)."""

    policy: Policy
    deadline: Bound | None = None
    counted: Callable[[], None] | None = None

    def run(
        self,
        call: Callable[[], _T],
        *,
        sleep: Callable[[float], None],
        jitter: Callable[[], float] = random.random,
        on_retry: Callable[[SyncworkerError, float], None] | None = None,
    ) -> _T:
        """:meth:`Policy.run` with this caller's deadline and counter."""

        def note(error: SyncworkerError, delay: float) -> None:
            if self.counted is not None:
                self.counted()
            if on_retry is not None:
                on_retry(error, delay)

        return self.policy.run(
            call, sleep=sleep, deadline=self.deadline, jitter=jitter, on_retry=note
        )


#: One upstream's requests and the streams copied from it: the client's defaults
#: (``ClientOptions.max_retries`` and ``retry_delay`` set them per upstream). Altered
#: bytes are fetched again too.
REQUESTS = Policy("requests", retries=3, base=0.5, worth=worth_refetching)
#: A Celery task that failed temporarily: an upstream down for minutes (a restart, a 429
#: storm) is waited out over about half an hour: 15 s, 30 s, 1 min, 2 min, 4 min, then
#: 5 min each.
TASKS = Policy("tasks", retries=8, base=15.0, cap=300.0)
#: A task whose repository lock is held by a live worker doing the same repository: it is
#: usually done within a minute, so look again soon; the lock's TTL frees it if its holder
#: died. Waited for this many times before the repository is counted failed.
LOCK_WAITS = Policy("lock waits", retries=120, base=5.0, cap=60.0)


def _raise_after_attempts(error: SyncworkerError, attempts: int) -> NoReturn:
    """Raise ``error``, the last attempt's, as it is: its cause is what :func:`classify`
    judges a store's error by. Altered bytes that came back altered every time say how
    often they were fetched (a cause that survives refetching is the upstream's, not a
    proxy's hiccup)."""
    if attempts > 1 and isinstance(error, DigestMismatchError):
        raise DigestMismatchError(f"{error} (the same after {attempts} fetches)") from error
    raise error
