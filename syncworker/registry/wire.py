"""The wire under one upstream: its ``requests`` session, the answers it gives (one
:class:`Answer` type whichever way a request was sent), reading bodies, and the one place
where ``requests`` and ``urllib3`` exceptions become :class:`TransportError`."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import urllib3
from requests.cookies import extract_cookies_to_jar

from syncworker.errors import TransportError
from syncworker.redact import redact_http_url
from syncworker.registry.answers import printable
from syncworker.registry.options import ClientOptions
from syncworker.registry.pinning import PinningAdapter

__all__ = [
    "BODY_ERRORS",
    "SEND_ERRORS",
    "Answer",
    "ERROR_BODY_CAP",
    "READ_CHUNK",
    "discard",
    "make_session",
    "prepared_plainly",
    "read_prefix",
    "send_prepared",
    "timed_out",
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
# What sending may raise: requests' errors, and urllib3's own from :func:`send_prepared`.
SEND_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError)


class Answer:
    """An HTTP answer with its body unread: urllib3's response (``raw``) and what the
    transport reads of it. Closing it gives a fully read connection back to the pool and
    drops an unread one, as closing a ``requests`` response does."""

    __slots__ = ("_decode", "_on_close", "headers", "method", "raw", "status", "url")

    def __init__(
        self,
        method: str,
        url: str,
        raw: urllib3.BaseHTTPResponse,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.method = method
        #: The URL asked (redirects are followed above this layer, one answer each).
        self.url = url
        self.raw = raw
        self.status = raw.status
        self.headers: Mapping[str, str] = raw.headers if headers is None else headers
        # A body without Content-Encoding is read as it comes: urllib3's decoding path
        # copies every chunk through a buffer even when there is nothing to decode.
        self._decode = "Content-Encoding" in self.headers
        self._on_close: list[Callable[[], None]] = []

    def read1(self, size: int) -> bytes:
        """What one ``recv`` brings, at most ``size`` bytes, decoded; b"" at the end."""
        return self.raw.read1(size, decode_content=self._decode)

    def on_close(self, call: Callable[[], None]) -> None:
        """Call ``call`` once, when this answer is closed."""
        self._on_close.append(call)

    def close(self) -> None:
        try:
            self.raw.close()
            self.raw.release_conn()
        finally:
            calls, self._on_close = self._on_close, []
            for call in calls:
                call()

    def __enter__(self) -> Answer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


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
    """What ``session.request`` would prepare for a bodiless GET or HEAD, built directly, for
    :func:`send_prepared`; or None when preparing it could change something (a URL
    requests would re-quote or take credentials from, cookies to attach).
    ``session.request`` merges settings, cookies and hooks and re-parses the URL on every
    call: most of requests' CPU per request."""
    if method not in ("GET", "HEAD") or session.cookies or not _PLAIN_URL.fullmatch(url):
        return None
    prepared = requests.PreparedRequest()
    prepared.method = method
    prepared.url = url
    # Headers checked as requests checks them (no line breaks: no header injection).
    prepared.prepare_headers({**session.headers, **headers})
    return prepared


def send_prepared(
    session: requests.Session,
    adapter: PinningAdapter,
    prepared: requests.PreparedRequest,
    timeout: float,
) -> Answer:
    """What ``session.send(prepared, stream=True, allow_redirects=False)`` does for a
    bodiless request through ``adapter`` (the session's), on the same pool with the same
    TLS settings and headers, without the layers around urllib3's answer that cost more
    CPU than the request itself: requests' Response, its header copy and hooks. Cookies an
    answer sets are kept in the session's jar as requests keeps them (the next request
    then goes through requests). urllib3's exceptions are raised as they are, without
    retries: the transport retries."""
    assert prepared.url is not None and prepared.method is not None
    pool = adapter.get_connection_with_tls_context(
        prepared, session.verify, proxies={}, cert=session.cert
    )
    adapter.cert_verify(pool, prepared.url, session.verify, session.cert)  # type: ignore[no-untyped-call]
    raw = pool.urlopen(  # type: ignore[attr-defined]
        prepared.method,
        prepared.path_url,
        headers=prepared.headers,
        redirect=False,
        assert_same_host=False,
        preload_content=False,
        decode_content=False,
        retries=False,
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
    )
    if "Set-Cookie" in raw.headers:
        extract_cookies_to_jar(session.cookies, prepared, raw)  # type: ignore[no-untyped-call]
    return Answer(prepared.method, prepared.url, raw)


def discard(response: Answer) -> None:
    """Drain a small unwanted body (a 401, a redirect) so its connection is reused."""
    with response, contextlib.suppress(*BODY_ERRORS):
        read_prefix(response, ERROR_BODY_CAP)


def read_prefix(response: Answer, cap: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while total < cap and (chunk := response.read1(READ_CHUNK)):
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)[:cap]


# Exceptions that mean "the answer was too slow", wherever in the chain they are: requests
# wraps a read timeout in the middle of a body as a ConnectionError.
_TIMEOUTS = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)


def transport_error(method: str, url: str, exc: BaseException) -> TransportError:
    """A message that names the failure (a timeout as one) without echoing the URL's query
    (tokens)."""
    kind = "timed out" if timed_out(exc) else None
    what = kind or type(exc).__name__
    return TransportError(f"{method} {redact_http_url(url)}: {what} ({_reason(exc)})")


def timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is, or wraps, a timeout. urllib3 files a refused connection
    (NewConnectionError) under its TimeoutError: that one is not."""
    return any(
        isinstance(e, _TIMEOUTS) and not isinstance(e, urllib3.exceptions.NewConnectionError)
        for e in _chain(exc)
    )


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
