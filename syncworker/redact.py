"""Secrets out of messages and logs: one function per kind of text.

- :func:`redact_http_url`: a registry, token-realm or object-storage URL for a message:
  userinfo dropped, every query value that is not plain data replaced (presigned URLs
  carry credentials in parameters whose names vary by cloud).
- :func:`redact_redis_url`: a Redis URL for a message: the password replaced by ``***``.
- :func:`redact_text`: a free-form message (a library's exception text, an upstream's
  error detail): URL passwords, ``Authorization`` values, ``key=secret`` pairs and JWTs.

And the logging side: :func:`install_log_redaction` filters urllib3's request lines;
:func:`quiet_library_loggers` keeps the HTTP and AWS libraries' loggers at INFO or above,
whose DEBUG output prints request headers (``Authorization``, ``X-Amz-Security-Token``)
and presigned URLs.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "QUIET_LOGGERS",
    "REDACTED",
    "QueryRedactingFilter",
    "install_log_redaction",
    "quiet_library_loggers",
    "redact_http_url",
    "redact_redis_url",
    "redact_text",
]

# urllib3 logs every request line, query included, at DEBUG (`-vv`, or a worker's debug
# logging): a blob redirected to a presigned URL would put its signature in the logs.
URLLIB3_REQUEST_LOGGER = "urllib3.connectionpool"
# Libraries whose DEBUG records carry request headers or signed URLs (botocore logs every
# header it signs, the session token included). They stay at INFO whatever -v says.
QUIET_LOGGERS = ("urllib3", "requests", "botocore", "boto3", "s3transfer", "charset_normalizer")

# Query parameters whose values are plain data (pagination, token scope, upload digest).
_SAFE_PARAMS = frozenset({"n", "last", "scope", "service", "digest", "mount", "from"})
REDACTED = "REDACTED"

# userinfo with a password in any URL (redis://user:pass@host, https://user:token@host).
# Passwords are often written unencoded, so the password may hold any of "@:/%?#": it runs
# to the *last* "@" of the URL that is followed by what can only be a host (a name or an
# IPv6 literal, an optional numeric port, then the path, the query, the end of the URL or
# punctuation around it). That is where redis-py and urllib split it too (they take the
# last "@" of the authority), and a raw "/" in a password cannot cut it short.
_URL_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s:/]*?):\S*@"
    r"(?=(?:\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9._~-]*)(?::[0-9]*)?(?:[/?#\s'\"<>),;\]]|$))"
)
# Authorization header values and key=value secrets that a library or upstream may echo.
_AUTH_VALUE = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_SECRET_PARAM = re.compile(
    r"(?i)\b(password|passwd|token|secret|access_token|refresh_token|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig)=[^&\s]+"
)
# A JWT (header.payload.signature, base64url): a bearer token even without its scheme.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def redact_http_url(url: str) -> str:
    """``url`` without userinfo, fragment or any query value that is not plain data."""
    try:
        parts = urlsplit(_URL_USERINFO.sub(r"\g<scheme>", url))
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


def redact_redis_url(url: str) -> str:
    """Any URL fit for messages, the user kept and the password (if any) replaced by
    ``***``, whatever characters it holds, raw or percent-encoded."""
    return _URL_USERINFO.sub(r"\g<scheme>\g<user>:***@", url)


def redact_text(message: str) -> str:
    """Remove credentials that may appear in a free-form message."""
    message = redact_redis_url(message)
    message = _AUTH_VALUE.sub(r"\1 ***", message)
    message = _SECRET_PARAM.sub(r"\1=***", message)
    return _JWT.sub("***", message)


class QueryRedactingFilter(logging.Filter):
    """Redacts query values in a record's string arguments (urllib3 passes the URL there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_http_url(arg) if isinstance(arg, str) and "?" in arg else arg
                for arg in record.args
            )
        return True


def install_log_redaction() -> None:
    """Attach the filter to urllib3's request logger, once per process."""
    logger = logging.getLogger(URLLIB3_REQUEST_LOGGER)
    if not any(isinstance(f, QueryRedactingFilter) for f in logger.filters):
        logger.addFilter(QueryRedactingFilter())


def quiet_library_loggers(level: int) -> None:
    """Set :data:`QUIET_LOGGERS` to ``level``, but never below INFO: a later change of the
    root level (``-vv``, Celery's ``--loglevel debug``) then leaves them where they are."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
