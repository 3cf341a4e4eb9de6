"""URLs fit for messages and logs: no userinfo, no token or signature values."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["QueryRedactingFilter", "install_log_redaction", "redact_url"]

# urllib3 logs every request line, query included, at DEBUG (`-vv`, or a worker's debug
# logging): a blob redirected to a presigned URL would put its signature in the logs.
URLLIB3_REQUEST_LOGGER = "urllib3.connectionpool"

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


class QueryRedactingFilter(logging.Filter):
    """Redacts query values in a record's string arguments (urllib3 passes the URL there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(arg) if isinstance(arg, str) and "?" in arg else arg
                for arg in record.args
            )
        return True


def install_log_redaction() -> None:
    """Attach the filter to urllib3's request logger, once per process."""
    logger = logging.getLogger(URLLIB3_REQUEST_LOGGER)
    if not any(isinstance(f, QueryRedactingFilter) for f in logger.filters):
        logger.addFilter(QueryRedactingFilter())
