"""Go's ``time.ParseDuration`` syntax (``6h``, ``1h30m``, ``500ms``, ``1m30.5s``) as timedelta.

zot's durations (``pollInterval``, ``retryDelay``, ``gcDelay``...) are decoded by Go, so a
zot config holds them in this syntax: a sequence of decimal numbers, each with a unit
(``ns``, ``us``/``µs``, ``ms``, ``s``, ``m``, ``h``); ``0`` alone needs no unit.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

__all__ = ["parse_duration"]

_UNIT_SECONDS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "\u00b5s": Decimal("1e-6"),  # micro sign, as Go accepts
    "\u03bcs": Decimal("1e-6"),  # Greek mu, as Go accepts
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)([a-zµμ]+)")


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration; ``ValueError`` naming the problem if it is not one.

    Negative durations are refused: nothing in the configuration can wait less than nothing.
    Precision below a microsecond (timedelta's) is dropped.
    """
    body = text.strip()
    if body.startswith("-"):
        raise ValueError(f"duration {text!r} is negative")
    body = body.removeprefix("+")
    if body == "0":
        return timedelta(0)
    if not body:
        raise ValueError("empty duration")
    total = Decimal(0)
    pos = 0
    while pos < len(body):
        m = _PART.match(body, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r} (use Go syntax such as 90s, 1h30m, 500ms)")
        unit = _UNIT_SECONDS.get(m.group(2))
        if unit is None:
            raise ValueError(f"unknown unit {m.group(2)!r} in duration {text!r}")
        total += Decimal(m.group(1)) * unit
        pos = m.end()
    return timedelta(microseconds=int(total * 1_000_000))
