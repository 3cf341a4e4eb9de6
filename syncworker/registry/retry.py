"""When to try a request again, and how long to wait first: pure functions.

Exponential backoff with "full jitter" (a uniform delay between zero and the exponential
bound) spreads many workers' retries apart instead of synchronising them. A server's
``Retry-After`` (RFC 9110 section 10.2.3: delay-seconds or an HTTP-date) replaces the
computed delay, still under the cap.
"""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime

from syncworker.errors import RegistryError, SyncworkerError, TransportError

__all__ = ["MAX_RETRY_DELAY", "backoff_delay", "parse_retry_after", "should_retry"]

# No single wait longer than this, whatever the server asks: a worker stuck for an hour
# on one request is worse than one more failed attempt.
MAX_RETRY_DELAY = 60.0


def backoff_delay(
    attempt: int,
    base: float,
    cap: float = MAX_RETRY_DELAY,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    bound = min(cap, base * (2.0 ** min(attempt, 62)))
    return (rng or random).uniform(0.0, bound)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (a Unix time), or None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT (RFC 9110 section 5.6.7)
        return None
    return max(when.timestamp() - now, 0.0)


def should_retry(error: SyncworkerError) -> bool:
    """Connection failures, 408, 429 and 5xx; never 401/403/404 or content errors."""
    if isinstance(error, TransportError):
        return True
    return isinstance(error, RegistryError) and error.temporary
