r"""Go (RE2) regular expressions, as zot compiles ``tags.regex`` and ``tags.excludeRegex``.

Python's ``re`` reads most of RE2 the same way; the differences a zot config can hit are
translated: ``\z`` (end of text) is Python's ``\Z``; ``\Q...\E`` quotes literally;
``\x{263a}`` is a hex code point; ``(?<name>...)`` is ``(?P<name>...)``; ``[[:alpha:]]``
POSIX classes become ASCII ranges; ``\d \w \s \b`` are ASCII-only in RE2, hence
``re.ASCII``.

Refused with a clear message instead of silently meaning something else: the ``U`` flag
(ungreedy in Go, Unicode in Python), ``\p{...}`` classes, negated POSIX classes. Python
accepts a few things RE2 refuses (backreferences, lookarounds); those are left alone.
Flags set mid-pattern (``a(?i)b``) are refused by Python 3.11 with its own message.
"""

from __future__ import annotations

import re
import warnings

__all__ = ["compile_go_regex"]

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_GO_TOKEN = re.compile(
    r"\\Q(?P<quoted>.*?)(?:\\E|$)"
    r"|\\x\{(?P<hex>[0-9A-Fa-f]{1,6})\}"
    r"|\\z"
    r"|\\[pP]"
    r"|\\."
    r"|\(\?<(?P<name>[A-Za-z_][A-Za-z0-9_]*)>"
    r"|\(\?(?P<flags>[a-zA-Z-]*)[:)]"
    r"|\[:(?P<posix>\^?[a-z]+):\]",
    re.DOTALL,
)


def compile_go_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Go (RE2) regular expression with Go's meaning; ``ValueError`` if bad."""
    try:
        with warnings.catch_warnings():
            # Python warns about `[[`, `--`, `&&` in classes, which RE2 reads literally too.
            warnings.simplefilter("ignore", FutureWarning)
            return re.compile(_GO_TOKEN.sub(_go_token, pattern), re.ASCII)
    except re.error as exc:
        raise ValueError(str(exc)) from None


def _go_token(m: re.Match[str]) -> str:
    text = m.group(0)
    if m.group("quoted") is not None:
        return re.escape(m.group("quoted"))
    if m.group("hex") is not None:
        return f"\\U{int(m.group('hex'), 16):08x}"
    if m.group("name") is not None:
        return f"(?P<{m.group('name')}>"
    if m.group("flags") is not None and "U" in m.group("flags"):
        raise ValueError("the U (ungreedy) flag of Go regular expressions is not supported")
    if m.group("posix") is not None:
        return _posix_class(m.group("posix"))
    if text == "\\z":
        return "\\Z"
    if text in ("\\p", "\\P"):
        raise ValueError("Unicode classes (\\p{...}) are not supported")
    return text


def _posix_class(name: str) -> str:
    if name.startswith("^"):
        raise ValueError(f"negated POSIX class [:{name}:] is not supported")
    try:
        return _POSIX_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown POSIX class [:{name}:]") from None
