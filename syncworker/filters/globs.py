"""Doublestar globs (the library zot uses for ``prefix``) translated to Python regexes.

``*`` and ``?`` never cross ``/``; a ``**`` that is a whole path segment spans any number
of segments (``a/**`` also matches ``a``, ``**/c`` matches ``c``); a ``**`` inside a
segment acts as ``*``; ``[...]``/``[!...]``/``[^...]`` classes; ``{a,b}`` alternatives;
``\\`` escapes.
"""

from __future__ import annotations

import re

__all__ = ["compile_glob"]


def compile_glob(pattern: str) -> re.Pattern[str]:
    """Translate a doublestar glob into a regex to ``fullmatch``; ``ValueError`` if bad."""
    regex, _ = _translate(pattern, 0, in_braces=False)
    return re.compile(regex, re.DOTALL)


def _translate(pat: str, i: int, *, in_braces: bool) -> tuple[str, int]:
    out: list[str] = []
    while i < len(pat):
        ch = pat[i]
        if in_braces and ch in ",}":
            return "".join(out), i
        if ch == "\\":
            if i + 1 >= len(pat):
                raise ValueError("pattern ends with a lone backslash")
            out.append(re.escape(pat[i + 1]))
            i += 2
        elif ch == "*":
            piece, i = _star(pat, i)
            out.append(piece)
        elif ch == "/" and pat[i + 1 :] in ("**", "**/") and not in_braces:
            out.append("(?:/.*)?")  # `a/**` matches `a` itself too
            i = len(pat)
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            piece, i = _char_class(pat, i)
            out.append(piece)
        elif ch == "{":
            piece, i = _alternatives(pat, i)
            out.append(piece)
        else:
            out.append(re.escape(ch))
            i += 1
    if in_braces:
        raise ValueError("unclosed '{'")
    return "".join(out), i


def _star(pat: str, i: int) -> tuple[str, int]:
    if pat.startswith("**", i):
        whole_segment = (i == 0 or pat[i - 1] == "/") and (i + 2 == len(pat) or pat[i + 2] == "/")
        if whole_segment:
            if i + 2 < len(pat):
                return "(?:.*/)?", i + 3  # `**/` spans zero or more directories
            return ".*", i + 2
        return "[^/]*", i + 2
    return "[^/]*", i + 1


def _char_class(pat: str, i: int) -> tuple[str, int]:
    j = i + 1
    negate = j < len(pat) and pat[j] in "!^"
    if negate:
        j += 1
    items: list[str] = []
    while j < len(pat) and (pat[j] != "]" or not items):
        if pat[j] == "\\" and j + 1 < len(pat):
            j += 1
        if pat[j] == "-" and items and j + 1 < len(pat) and pat[j + 1] != "]":
            items.append("-")
        else:
            items.append(re.escape(pat[j]))
        j += 1
    if j >= len(pat):
        raise ValueError("unclosed '['")
    body = "".join(items)
    return (f"[^/{body}]" if negate else f"(?!/)[{body}]"), j + 1


def _alternatives(pat: str, i: int) -> tuple[str, int]:
    options: list[str] = []
    i += 1
    while True:
        piece, i = _translate(pat, i, in_braces=True)
        options.append(piece)
        if pat[i] == "}":
            return "(?:" + "|".join(options) + ")", i + 1
        i += 1  # past the `,`
