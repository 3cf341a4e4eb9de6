"""Sections of bench/RESULTS.md that a run of their own replaces between two markers, and
that a full ``python -m bench`` run keeps as they are (the scale set, ``bench.check``,
``bench.serve``, ``bench.scale_memory``, ``bench.walk_ahead``)."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CHECK_SECTION",
    "KEPT_SECTIONS",
    "SCALE_MEMORY_SECTION",
    "SERVE_SECTION",
    "WALK_AHEAD_SECTION",
    "existing",
    "splice",
]

#: The markers of ``python -m bench.check``'s section.
CHECK_SECTION = ("<!-- check --deep: start -->", "<!-- check --deep: end -->")
#: The markers of ``python -m bench.serve``'s section.
SERVE_SECTION = ("<!-- serve: start -->", "<!-- serve: end -->")
#: ``python -m bench.scale_memory``'s.
SCALE_MEMORY_SECTION = ("<!-- scale memory: start -->", "<!-- scale memory: end -->")
#: ``python -m bench.walk_ahead``'s.
WALK_AHEAD_SECTION = ("<!-- walk ahead: start -->", "<!-- walk ahead: end -->")
#: Those a full run copies from the report it replaces, in this order.
KEPT_SECTIONS = (SCALE_MEMORY_SECTION, WALK_AHEAD_SECTION, CHECK_SECTION, SERVE_SECTION)


def splice(text: str, section: list[str], start: str, end: str) -> str:
    """``text`` with the section between ``start`` and ``end`` replaced by ``section``
    (appended if it had none; kept as it is if ``section`` is empty)."""
    if not section:
        return text
    block = "\n".join(section)
    first, last = text.find(start), text.find(end)
    if first < 0 or last < first:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    return text[:first] + block + text[last + len(end) :]


def existing(path: Path, start: str, end: str) -> list[str]:
    """The section between ``start`` and ``end`` of the report at ``path``, if any."""
    if not path.exists():
        return []
    text = path.read_text()
    first, last = text.find(start), text.find(end)
    if first < 0 or last < first:
        return []
    return text[first : last + len(end)].splitlines()
