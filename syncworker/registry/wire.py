"""The wire under one upstream: its ``requests`` session, reading bodies, and the one
place where ``requests`` and ``urllib3`` exceptions become :class:`TransportError`."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
import urllib3

from syncworker.errors import TransportError
from syncworker.redact import redact_http_url
from syncworker.registry.answers import printable
from syncworker.registry.options import ClientOptions
from syncworker.registry.pinning import PinningAdapter

__all__ = [
    "BODY_ERRORS",
    "ERROR_BODY_CAP",
    "READ_CHUNK",
    "discard",
    "make_session",
    "prepared_plainly",
    "read_prefix",
    "transport_error",
]

# Error bodies are JSON of a few hundred bytes (spec.md "Error Codes"); read no more.
ERROR_BODY_CAP = 64 * 1024
# Read size while buffering small bodies (manifests, lists, error bodies).
READ_CHUNK = 64 * 1024
# A URL with only these characters is sent by requests as it is (nothing to quote, no
# userinfo to turn into credentials, an ASCII host).
_PLAIN_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]!$&'()*+,;=]*")
# What the wire may raise mid-body: urllib3's own errors when reading the raw stream.
BODY_ERRORS = (urllib3.exceptions.HTTPError, requests.RequestException, OSError)


def make_session(options: ClientOptions, adapter: PinningAdapter) -> requests.Session:
    session = requests.Session()
    # No environment lookups per request (proxies, netrc credentials): they cost time on
    # every call and could attach credentials we were not given.
    session.trust_env = False
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = options.user_agent
    if not options.tls_verify:
        session.verify = False
    elif options.cert_dir:
        ca = Path(options.cert_dir, "ca.crt")
        if ca.is_file():
            session.verify = str(ca)
    if options.cert_dir:
        cert, key = Path(options.cert_dir, "client.cert"), Path(options.cert_dir, "client.key")
        if cert.is_file() and key.is_file():
            session.cert = (str(cert), str(key))
    return session


def prepared_plainly(
    session: requests.Session, method: str, url: str, headers: Mapping[str, str]
) -> requests.PreparedRequest | None:
    """What ``session.request`` would prepare for a bodiless GET or HEAD, built directly; or
    None when preparing it could change something (a URL requests would re-quote or take
    credentials from, cookies to attach). ``session.request`` merges settings, cookies and
    hooks and re-parses the URL on every call: most of requests' CPU per request."""
    if method not in ("GET", "HEAD") or session.cookies or not _PLAIN_URL.fullmatch(url):
        return None
    prepared = requests.PreparedRequest()
    prepared.method = method
    prepared.url = url
    prepared.prepare_headers({**session.headers, **headers})
    prepared.prepare_cookies(None)  # an empty jar: requests keeps a redirect's cookies in it
    return prepared


def discard(response: requests.Response) -> None:
    """Drain a small unwanted body (a 401, a redirect) so its connection is reused."""
    with response, contextlib.suppress(*BODY_ERRORS):
        read_prefix(response, ERROR_BODY_CAP)


def read_prefix(response: requests.Response, cap: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    for chunk in response.iter_content(READ_CHUNK):
        parts.append(chunk)
        total += len(chunk)
        if total >= cap:
            break
    return b"".join(parts)[:cap]


# Exceptions that mean "the answer was too slow", wherever in the chain they are: requests
# wraps a read timeout in the middle of a body as a ConnectionError.
_TIMEOUTS = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)


def transport_error(method: str, url: str, exc: BaseException) -> TransportError:
    """A message that names the failure (a timeout as one) without echoing the URL's query
    (tokens)."""
    kind = "timed out" if any(isinstance(e, _TIMEOUTS) for e in _chain(exc)) else None
    what = kind or type(exc).__name__
    return TransportError(f"{method} {redact_http_url(url)}: {what} ({_reason(exc)})")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: causes, contexts, ``reason`` and exception arguments."""
    seen: set[int] = set()
    pending: list[Any] = [exc]
    while pending:
        item = pending.pop()
        if id(item) in seen or not isinstance(item, BaseException):
            continue
        seen.add(id(item))
        yield item
        pending += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]


def _reason(exc: BaseException) -> str:
    for item in _chain(exc):
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    # No OS-level cause (a body cut short, a garbled status line): the library's words.
    return printable(str(exc), 160) or "no answer"
