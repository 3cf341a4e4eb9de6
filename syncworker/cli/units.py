"""Numbers as the commands print them."""

from __future__ import annotations

import time

__all__ = ["human_size", "utc"]


def human_size(n: int) -> str:
    """Bytes for people: ``512 B``, ``3.2 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    raise AssertionError("unreachable")


def utc(when: float) -> str:
    """A Unix time as ISO 8601 in UTC, to the second: ``2026-12-07T04:10:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
