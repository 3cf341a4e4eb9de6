"""The HTTP server: a thread per connection (HTTP/1.1 keep-alive), each request turned
into a :class:`~syncworker.serve.messages.Request`, routed, and its answer written.

Chosen by measurement over uvicorn (bench/serve.py, bench/RESULTS.md): uvicorn implements
no ASGI ``pathsend``, so starlette's FileResponse copies every chunk through Python, while
here a filesystem blob goes from the page cache to the socket by ``sendfile`` (over TLS,
where the kernel cannot encrypt, ``socket.sendfile`` falls back to reads and writes).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from syncworker.errors import ConfigError, SyncworkerError
from syncworker.retry import classify
from syncworker.serve.apierrors import ApiError
from syncworker.serve.context import Served
from syncworker.serve.htpasswd import Htpasswd
from syncworker.serve.messages import API_VERSION, FileBody, Request, Response, StreamBody
from syncworker.serve.routes import READ_METHODS, dispatch, error_response

__all__ = ["IDLE_TIMEOUT", "Observer", "RegistryHTTPServer"]

log = logging.getLogger(__name__)

# A keep-alive connection idle this long is closed (and a client that sends its request
# slower than this is cut off), so idle clients cannot hold threads forever.
IDLE_TIMEOUT = 60.0
_SEND_TIMEOUT = struct.pack("ll", int(IDLE_TIMEOUT), 0)  # a struct timeval
# Connections waiting to be accepted: 20 clients reconnecting at once must not be refused.
BACKLOG = 512
# What is told of each answer: its route, method, status and the bytes of body sent.
Observer = Callable[[str, str, int, int], None]


class RegistryHTTPServer(ThreadingHTTPServer):
    """The registry on ``address``: ``served`` answers, ``htpasswd`` guards (None:
    anonymous read), ``tls`` encrypts (None: plain HTTP), ``observer(route, method,
    status, bytes sent)`` counts."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        served: Served,
        *,
        htpasswd: Htpasswd | None = None,
        tls: ssl.SSLContext | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.served, self.htpasswd, self.tls = served, htpasswd, tls
        self.observer = observer
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """Where clients reach this server, e.g. ``http://127.0.0.1:5000``."""
        host = str(self.server_address[0])
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = self.socket.accept()
        if self.tls is not None:
            # The handshake happens on the connection's own thread, at its first read: a
            # slow client never holds up the accepting loop.
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def answer(self, request: Request) -> tuple[str, Response]:
        """The route and the response to ``request``: auth first, then the route; a store
        failure is a 503 when temporary (the client retries), else a 500."""
        if self.htpasswd is not None:
            try:
                self.htpasswd.check(request.headers.get("authorization"))
            except ApiError as exc:
                return "unauthorized", error_response(exc)
            except ConfigError as exc:  # the file was removed or garbled since it was read
                log.error("%s %r refused: %s", request.method, request.path[:300], exc)
                refused = ApiError(500, "UNKNOWN", "credentials cannot be checked; see logs")
                return "error", error_response(refused)
        try:
            return dispatch(self.served, request)
        except SyncworkerError as exc:
            log.warning("%s %s: %s", request.method, request.path[:300], exc)
            status = 503 if classify(exc) else 500
            code = "UNAVAILABLE" if status == 503 else "UNKNOWN"
            return "error", error_response(ApiError(status, code, "the store failed; see logs"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "syncworker"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True
    server: RegistryHTTPServer

    def __getattr__(self, name: str) -> Any:
        # Every method is routed (a write answers 405 UNSUPPORTED): do_PUT, do_PATCH...
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request(self.command, unquote(parts.path), parse_qs(parts.query), headers)
        if request.method not in READ_METHODS or _has_body(headers):
            # A body we will not read would be taken for the next request.
            self.close_connection = True
        route, response = self.server.answer(request)
        try:
            sent = self._send(request, response)
        except (BrokenPipeError, ConnectionResetError):  # the client left mid-answer
            self.close_connection, sent = True, 0
        if self.server.observer is not None:
            self.server.observer(route, request.method, response.status, sent)

    def _send(self, request: Request, response: Response) -> int:
        """Write ``response``; the bytes of body sent."""
        body = response.body
        head = self._head(response)
        if request.method == "HEAD":
            if isinstance(body, FileBody):
                body.close()
            self.wfile.write(head)
            return 0
        if isinstance(body, bytes):
            self.wfile.write(head + body)
            return len(body)
        self.wfile.write(head)
        if isinstance(body, FileBody):
            return self._send_file(body)
        return self._stream(body)

    def _head(self, response: Response) -> bytes:
        reason = HTTPStatus(response.status).phrase
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        headers = {**API_VERSION, **response.headers}
        headers["Content-Length"] = str(response.content_length)
        if self.close_connection:
            headers["Connection"] = "close"
        elif self.request_version == "HTTP/1.0":  # kept open only when said so (RFC 7230 A.1.2)
            headers["Connection"] = "keep-alive"
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send_file(self, body: FileBody) -> int:
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                with os.fdopen(os.dup(body.fd), "rb", buffering=0) as file:
                    sent: int = self.connection.sendfile(file, body.start, body.length)
            else:
                sent = _sendfile(self.connection, body)
        finally:
            body.close()
        if sent != body.length:  # the file shrank, or the client stalled: tell it by closing
            self.close_connection = True
        return sent

    def _stream(self, body: StreamBody) -> int:
        sent = 0
        try:
            with body.open() as chunks:
                for chunk in chunks:
                    self.wfile.write(chunk)
                    sent += len(chunk)
        except SyncworkerError as exc:
            log.warning("%s: stream cut after %d bytes: %s", self.path[:300], sent, exc)
        if sent != body.length:  # the status is sent: only closing tells the client
            self.close_connection = True
        return sent


def _has_body(headers: dict[str, str]) -> bool:
    """Whether a request is followed by a body: a Content-Length, or a Transfer-Encoding
    (RFC 9112 section 6.1: chunked framing, whatever the method)."""
    return "content-length" in headers or "transfer-encoding" in headers


def _sendfile(sock: socket.socket, body: FileBody) -> int:
    """``body`` sent by the kernel on a blocking socket: each ``sendfile`` moves all the
    socket takes, without a return to Python per buffer-full (what ``socket.sendfile``
    does on a socket with a timeout). SO_SNDTIMEO bounds a client that stops reading."""
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _SEND_TIMEOUT)

    sent = 0
    try:
        while sent < body.length:
            moved = os.sendfile(sock.fileno(), body.fd, body.start + sent, body.length - sent)
            if moved == 0:
                break
            sent += moved
    except OSError as exc:  # EAGAIN after SO_SNDTIMEO, a reset: the response is cut
        log.debug("sendfile stopped after %d of %d bytes: %s", sent, body.length, exc)
    finally:
        sock.settimeout(IDLE_TIMEOUT)
    return sent
