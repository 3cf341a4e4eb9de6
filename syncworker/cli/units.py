"""Numbers as the commands read and print them."""

from __future__ import annotations

import argparse
import math
import time

__all__ = [
    "REPOSITORIES",
    "counted",
    "human_size",
    "port_number",
    "positive_int",
    "positive_seconds",
    "utc",
]


def positive_int(text: str) -> int:
    """An option's whole number of at least 1 (argparse's ``type``): anything else is a
    usage error naming the option, not a failure deep in a thread pool."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def port_number(text: str) -> int:
    """A TCP port to listen on, 1 to 65535."""
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, got {text!r}")
    return int(text)


def positive_seconds(text: str) -> float:
    """A number of seconds above 0."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text!r}")
    return seconds


def human_size(n: int) -> str:
    """Bytes for people: ``512 B``, ``3.2 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    raise AssertionError("unreachable")


# The noun the commands count most, for counted(n, *REPOSITORIES).
REPOSITORIES = ("repository", "repositories")


def counted(n: int, noun: str, plural: str = "") -> str:
    """``n`` and the noun in its number: ``1 entry``, ``2 entries`` (``plural`` when it is
    not the noun and an "s")."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def utc(when: float) -> str:
    """A Unix time as ISO 8601 in UTC, to the second: ``2026-12-07T04:10:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
