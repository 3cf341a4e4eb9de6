"""URLs fit for messages and logs: no userinfo, no token or signature values."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url"]

# Query parameters whose values are plain data (pagination, token scope, upload digest).
# Every other value is replaced: presigned blob URLs carry credentials in parameters
# whose names vary by cloud (X-Amz-Signature, sig, se, Expires, token, ...).
_SAFE_PARAMS = frozenset({"n", "last", "scope", "service", "digest", "mount", "from"})
REDACTED = "REDACTED"


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<malformed url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    query = [
        (key, value if key in _SAFE_PARAMS else REDACTED)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe=":*/,"), ""))
