"""Reading the parts of an HTTP answer an upstream controls: header values, error bodies.

Each value is checked for what it claims to be; anything else is a
:class:`~syncworker.errors.MalformedResponseError` naming the header, never a crash
(``"²".isdigit()`` is true in Python, ``int("²")`` raises).
"""

from __future__ import annotations

from collections.abc import Mapping

from syncworker.errors import MalformedResponseError
from syncworker.oci.document import load_json
from syncworker.redact import redact_text

__all__ = ["MAX_DETAIL_CHARS", "declared_length", "media_type", "printable", "spec_errors"]

# An error's message is shown to people; a page of it is not a message.
MAX_DETAIL_CHARS = 200
# Error codes are short upper-case words (spec.md "Error Codes"); a few of them at most.
MAX_CODE_CHARS = 40
MAX_CODES = 8


def declared_length(headers: Mapping[str, str], what: str) -> int | None:
    """``Content-Length`` as a number; None if absent. RFC 9110 8.6: 1*DIGIT (ASCII)."""
    value = headers.get("Content-Length")
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        raise MalformedResponseError(f"{what}: Content-Length {printable(value, 40)!r}")
    return int(value)


def media_type(headers: Mapping[str, str]) -> str:
    """The ``Content-Type`` without parameters ('' if absent)."""
    return headers.get("Content-Type", "").split(";")[0].strip()


def spec_errors(body: bytes) -> tuple[tuple[str, ...], str]:
    """spec.md "Error Codes": ``{"errors": [{"code", "message", "detail"}]}``, if that.

    Anything else (HTML from a proxy, nested garbage) gives no codes and no message: the
    status alone then describes the error.
    """
    try:
        doc = load_json(body, "error body")
    except MalformedResponseError:
        return (), ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return (), ""
    entries = [e for e in errors if isinstance(e, dict)]
    codes = tuple(
        printable(e["code"], MAX_CODE_CHARS) for e in entries if isinstance(e.get("code"), str)
    )
    message = next((e["message"] for e in entries if isinstance(e.get("message"), str)), "")
    # An upstream may echo what it was sent (a token, a login) in its message.
    return codes[:MAX_CODES], printable(redact_text(message), MAX_DETAIL_CHARS)


def printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, control characters (terminal escapes, line
    breaks that would forge log lines) replaced by ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])
