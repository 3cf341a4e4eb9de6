"""Each retry policy once: what is worth another try, how long to wait, and the loop.

Every retry in syncworker goes through here: the client's requests (manifests, lists,
tokens), the blob copier's whole streams, and the Celery tasks' re-deliveries
(``worker/policy.py``). None nests inside another: a blob stream is opened with a single
attempt and retried only as a whole, so ``n`` retries cost at most ``n + 1`` requests.

- What is temporary is decided by the error itself (``errors.py``: a table of HTTP statuses
  and spec error codes for :class:`RegistryError`, a class attribute for the others);
  :func:`is_temporary` is the one predicate every caller asks.
- A blob or manifest whose bytes arrived altered (a flipped byte from a proxy or CDN) is
  worth another fetch too (:func:`worth_refetching`: the client's own requests and the blob
  copier both use it); when the last fetch is altered as well, the error names the digest
  and how many fetches were made.
- :func:`backoff_delay` is pure: doubling from ``base`` up to ``cap``, a random ``jitter``
  taking up to half off (so that clients failed together by one outage come back apart),
  and a server's ``Retry-After`` honoured when it asks for longer, still under the cap.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TypeVar

from syncworker.errors import DigestMismatchError, RegistryError, SyncworkerError
from syncworker.registry.deadline import Deadline

__all__ = [
    "MAX_RETRY_DELAY",
    "backoff_delay",
    "is_temporary",
    "parse_retry_after",
    "retrying",
    "worth_refetching",
]

# No single wait longer than this, whatever the server asks: a worker stuck for an hour
# on one request is worse than one more failed attempt.
MAX_RETRY_DELAY = 60.0
# 2**62 seconds is already beyond any cap; a larger exponent would overflow a float.
_MAX_EXPONENT = 62
_T = TypeVar("_T")


def is_temporary(error: BaseException) -> bool:
    """Whether the same operation may succeed later: connection failures, 408, 429, 5xx,
    a busy lock, an unreachable Redis; never 401/403/404 or refused content."""
    return isinstance(error, SyncworkerError) and error.temporary


def worth_refetching(error: BaseException) -> bool:
    """For content checked against its digest (blob streams, manifests): temporary, or
    bytes that did not hash to their digest."""
    return is_temporary(error) or isinstance(error, DigestMismatchError)


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


def retrying(
    call: Callable[[], _T],
    *,
    retries: int,
    base: float,
    sleep: Callable[[float], None],
    worth: Callable[[BaseException], bool] = is_temporary,
    jitter: Callable[[], float] = random.random,
    on_retry: Callable[[SyncworkerError, float], None] | None = None,
    deadline: Deadline | None = None,
) -> _T:
    """``call()``, tried again up to ``retries`` times while its error is ``worth`` it.

    A wait that would end past ``deadline`` is not started: the deadline's error is raised.
    """
    for attempt in itertools.count():
        try:
            return call()
        except SyncworkerError as exc:
            if not worth(exc):
                raise
            if attempt >= retries:
                raise _after_attempts(exc, attempt + 1) from None
            retry_after = exc.retry_after if isinstance(exc, RegistryError) else None
            delay = backoff_delay(attempt, base=base, retry_after=retry_after, jitter=jitter())
            if deadline is not None:
                deadline.check_wait(delay, str(exc))
            if on_retry is not None:
                on_retry(exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def _after_attempts(error: SyncworkerError, attempts: int) -> SyncworkerError:
    """Altered bytes that came back altered every time say how often they were fetched
    (a cause that survives refetching is the upstream's, not a proxy's hiccup)."""
    if attempts > 1 and isinstance(error, DigestMismatchError):
        return DigestMismatchError(f"{error} (the same after {attempts} fetches)")
    return error
