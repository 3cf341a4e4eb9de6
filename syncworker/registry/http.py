"""The client's one HTTP interface: a :class:`Request` in, a :class:`Response` out.

Each concern of talking to an upstream is a :class:`Handler` wrapping the next one (as
go-containerregistry's ``transport`` RoundTrippers, or httpx's ``handle_request``),
composed in one place, :mod:`.stack`, outermost first::

    failover → retry (deadline) → reading → statuses → auth → redirects → rate → pool

A feature that changes how requests go out (a credential helper, a pull budget, a
bandwidth cap, request logging) is one more handler in that list, not a parameter.
Request logging (:mod:`.requestlog`) sits next to the pool: one line per request on the
wire, each redirect hop and token request its own.

This module also holds the one place where urllib3's exceptions become
:class:`~syncworker.errors.TransportError` (:func:`transport_error`): sending them in
:mod:`.pool`, reading a body here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple, Protocol

import urllib3

from syncworker.errors import SizeLimitError, TransportError
from syncworker.redact import redact_http_url
from syncworker.registry.answers import declared_length, printable
from syncworker.registry.deadline import Deadline
from syncworker.registry.stats import ClientStats
from syncworker.retry import parse_retry_after

__all__ = [
    "HTTP_ERRORS",
    "ERROR_BODY_CAP",
    "READ_CHUNK",
    "Body",
    "Handler",
    "Params",
    "Request",
    "Response",
    "timed_out",
    "transport_error",
]

# Error bodies are JSON of a few hundred bytes (spec.md "Error Codes"); read no more.
ERROR_BODY_CAP = 64 * 1024
# Read size while buffering small bodies (manifests, lists, error bodies).
READ_CHUNK = 64 * 1024
# What sending a request or reading a body may raise: urllib3's own errors, and the
# socket's (a reset while writing or reading).
HTTP_ERRORS = (urllib3.exceptions.HTTPError, OSError)
Params = Sequence[tuple[str, str]]
#: A request body: bytes (resent as needed), or chunks streamed once (an upload).
Body = bytes | Iterable[bytes] | None
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
# Retry-After not looked at yet (a parsed one is never negative).
_UNPARSED = -1.0


class Request(NamedTuple):
    """One request as every handler sees it (immutable: a handler that changes it sends a
    copy, :meth:`but`). A tuple, because a request is made per call and copied per auth
    header or redirect: the cheapest immutable record Python has."""

    method: str
    #: Absolute, or a path (``/v2/...``) that failover resolves against the upstream's URLs.
    url: str
    headers: Mapping[str, str] = _NO_HEADERS
    params: Params = ()
    body: Body = None
    #: What the request needs of the registry's token (scope.md), None for nothing.
    scope: str | None = None
    #: The job's deadline: every wait, request and body read ends before it.
    deadline: Deadline | None = None
    #: Read the whole body (at most this many bytes) before the response is returned, so
    #: that a failure while reading is retried; None: the caller streams it, once.
    read: int | None = None
    #: Run on the read response, inside the retry: bytes it finds altered
    #: (:class:`DigestMismatchError`) are fetched again.
    check: Callable[[Response], None] | None = None
    #: The upstream URL this request is made for, when ``url`` is not one of its own (a
    #: redirect target, a token realm): where it may connect is judged against it.
    upstream: str | None = None

    def but(self, **changes: Any) -> Request:
        return self._replace(**changes)

    @property
    def streamed(self) -> bool:
        """Whether the body is a stream, spent by the first request that carries it."""
        return self.body is not None and not isinstance(self.body, bytes)

    @property
    def what(self) -> str:
        """``METHOD url`` for messages, without secrets."""
        return f"{self.method} {redact_http_url(self.url)}"


class Response:
    """An HTTP answer: status, headers, the URL that gave it, and its body (read when the
    request asked, else streamed by the caller). Closing it gives a fully read connection
    back to the pool and drops an unread one."""

    __slots__ = (
        "_decode",
        "_meter",
        "_on_close",
        "_retry_after",
        "_stats",
        "body",
        "deadline",
        "headers",
        "method",
        "raw",
        "received",
        "status",
        "url",
    )

    def __init__(
        self,
        request: Request,
        url: str,
        raw: urllib3.BaseHTTPResponse,
        stats: ClientStats,
    ) -> None:
        self.method = request.method
        #: The URL asked (each redirect is a response of its own).
        self.url = url
        self.raw = raw
        self.status = raw.status
        self.headers: Mapping[str, str] = raw.headers
        self.deadline = request.deadline
        #: The whole body, once read (:meth:`read`).
        self.body = b""
        #: Body bytes read so far (as they came: compressed if the body was).
        self.received = 0
        self._stats = stats
        # A body without Content-Encoding is read as it comes: urllib3's decoding path
        # copies every chunk through a buffer even when there is nothing to decode.
        self._decode = "Content-Encoding" in raw.headers
        self._on_close: list[Callable[[], None]] = []
        self._meter: Callable[[int], None] | None = None
        self._retry_after: float | None = _UNPARSED

    @property
    def what(self) -> str:
        return f"{self.method} {redact_http_url(self.url)}"

    @property
    def retry_after(self) -> float | None:
        """``Retry-After`` in seconds (None if absent or garbled), parsed once."""
        if self._retry_after == _UNPARSED:
            self._retry_after = parse_retry_after(self.headers.get("Retry-After"), time.time())
        return self._retry_after

    def chunks(self, size: int) -> Iterator[bytes]:
        """The body's chunks; a broken connection mid-body becomes :class:`TransportError`.

        Each read returns what one ``recv`` brings (``read1``), so the deadline is checked
        between reads even when a server sends one byte every few seconds."""
        try:
            while True:
                if self.deadline is not None:
                    self.deadline.check(self)
                chunk = self.raw.read1(size, decode_content=self._decode)
                if not chunk:
                    return
                self._stats.add(bytes_downloaded=len(chunk))
                self.received += len(chunk)
                if self._meter is not None:
                    self._meter(len(chunk))
                yield chunk
        except HTTP_ERRORS as exc:
            raise transport_error(self.method, self.url, exc) from None

    def read(self, cap: int) -> bytes:
        """The whole body (kept as :attr:`body`), refusing one longer than ``cap`` before
        buffering it. A HEAD's Content-Length is its GET's, not this empty body's."""
        if self.method != "HEAD":
            declared = declared_length(self.headers, self.what)
            if declared is not None and declared > cap:
                raise SizeLimitError(f"{self.what}: body of {declared} bytes exceeds {cap}")
        parts: list[bytes] = []
        total = 0
        for chunk in self.chunks(READ_CHUNK):
            total += len(chunk)
            if total > cap:
                raise SizeLimitError(f"{self.what}: body exceeds {cap} bytes")
            parts.append(chunk)
        self.body = b"".join(parts)
        return self.body

    def prefix(self, cap: int) -> bytes:
        """At most ``cap`` bytes of the body, whatever its length (an error's), or b""
        when it cannot be read."""
        parts: list[bytes] = []
        total = 0
        try:
            while total < cap and (
                chunk := self.raw.read1(READ_CHUNK, decode_content=self._decode)
            ):
                parts.append(chunk)
                total += len(chunk)
                self.received += len(chunk)
        except HTTP_ERRORS:
            pass
        return b"".join(parts)[:cap]

    def discard(self) -> None:
        """Drain a small unwanted body (a 401, a redirect) so its connection is reused."""
        with self:
            self.prefix(ERROR_BODY_CAP)

    def metered(self, call: Callable[[int], None]) -> None:
        """Call ``call(size)`` after each chunk of the body is read (a bandwidth cap
        spends it, and may wait before the next read)."""
        self._meter = call

    def on_close(self, call: Callable[[], None]) -> None:
        """Call ``call`` once, when this response is closed."""
        self._on_close.append(call)

    def close(self) -> None:
        try:
            self.raw.close()
            self.raw.release_conn()
        finally:
            calls, self._on_close = self._on_close, []
            for call in calls:
                call()

    def __enter__(self) -> Response:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Handler(Protocol):
    """One concern of sending: takes a request, returns its response (the caller closes
    it), usually by asking the handler it wraps."""

    def send(self, request: Request) -> Response: ...


# Exceptions that mean "the answer was too slow", wherever in the chain they are.
_TIMEOUTS = (urllib3.exceptions.TimeoutError, TimeoutError)


# What OpenSSL says when the other side of a TLS handshake answers in plain HTTP: up to
# 3.1, and from 3.2 on.
_NOT_TLS = ("wrong_version_number", "record layer failure")


def transport_error(method: str, url: str, exc: BaseException) -> TransportError:
    """A message that names the failure (a timeout as one) without echoing the URL's query
    (tokens)."""
    what = "timed out" if timed_out(exc) else type(exc).__name__
    reason = _reason(exc)
    if url.startswith("https:") and any(sign in reason.lower() for sign in _NOT_TLS):
        reason += "; the server does not speak TLS there: is it an http:// URL?"
    return TransportError(f"{method} {redact_http_url(url)}: {what} ({reason})")


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
