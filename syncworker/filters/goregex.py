"""Go regular expressions, as zot compiles ``tags.regex`` and ``tags.excludeRegex``.

Go's ``regexp`` package implements RE2, so the patterns are compiled by RE2 itself (the
``google-re2`` package): a pattern zot refuses (lookarounds, backreferences, repetitions over
1000) is refused here, and one zot accepts matches the same tags (``\\d`` and ``\\w`` are
ASCII, ``(?U)`` is ungreedy, ``\\pL`` and ``[[:^alpha:]]`` are Unicode and POSIX classes).
"""

from __future__ import annotations

from typing import Protocol

import re2

__all__ = ["GoMatch", "GoRegex", "compile_go_regex"]


class GoMatch(Protocol):
    """A match of a :class:`GoRegex`."""

    def group(self, index: int = 0, /) -> str: ...


class GoRegex(Protocol):
    """A compiled pattern, as the content rules use it."""

    @property
    def pattern(self) -> str: ...

    def search(self, text: str) -> GoMatch | None: ...


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # the refusal is raised, named by its config field
    return options


_OPTIONS = _options()


def compile_go_regex(pattern: str) -> GoRegex:
    """Compile ``pattern`` with RE2; ``ValueError`` with RE2's reason if it refuses it."""
    try:
        compiled: GoRegex = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None
    return compiled
