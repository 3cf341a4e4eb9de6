"""A loopback HTTP/1.1 proxy in front of a registry that injects faults at a settable rate.

    with FaultProxy(server.url, rate=0.3, seed=7) as proxy:   # then mirror from proxy.url
        ...
        proxy.rate = 0.0                                        # faults off, while running
        proxy.injected()                                        # {"5xx": 12, "429": 9, ...}

Every GET and HEAD is forwarded to the upstream (one upstream connection per client
connection, kept alive as the client's is). With probability ``rate`` a request draws one
of ``faults`` instead:

    5xx       500, 502 or 503 with a distribution-spec error body; the upstream is not asked
    429       429 TOOMANYREQUESTS with ``Retry-After: <retry_after>``; the upstream not asked
    reset     the client's connection is reset (TCP RST) before any answer
    truncate  the upstream's headers (its Content-Length), half the body, then the
              connection closes
    flip      one byte of the body altered, length unchanged (a faulty proxy or CDN)
    stall     headers and half the body, then nothing for ``stall_seconds``, then the rest

``truncate``, ``flip`` and ``stall`` need a body: HEAD requests draw only from the others,
and a GET whose answer is not a 2xx with a body is forwarded unchanged (and not counted).
``paths`` limits faults to request paths it matches (e.g. blobs only). Draws come from one
``random.Random(seed)``, so a run draws the same sequence; which request gets which draw
depends on thread scheduling. Subclasses change how a body is sent by overriding
:meth:`FaultProxy.send_body` (tests/support/stalling_proxy.py does).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import random
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterable
from enum import StrEnum
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.support.loopback import KeptAliveHandler, LoopbackServer
from tests.support.ports import LOOPBACK

__all__ = ["CHUNK", "HOP_BY_HOP", "WAIT_SECONDS", "Fault", "FaultProxy"]

CHUNK = 1024 * 1024
# How long an upstream answer may take before the proxy gives up on it.
WAIT_SECONDS = 120.0
# Headers that describe one connection, not the message (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection"})
SERVER_ERRORS = (500, 502, 503)


class Fault(StrEnum):
    SERVER_ERROR = "5xx"
    THROTTLE = "429"
    RESET = "reset"
    TRUNCATE = "truncate"
    FLIP = "flip"
    STALL = "stall"


# Faults that alter a body the upstream sent; the others never reach the upstream.
BODY_FAULTS = frozenset({Fault.TRUNCATE, Fault.FLIP, Fault.STALL})


class FaultProxy(LoopbackServer):
    """Forwards GET/HEAD to ``upstream``, injecting faults into a ``rate`` of requests."""

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        faults: Iterable[Fault] = tuple(Fault),
        seed: int = 0,
        paths: str | None = None,
        stall_seconds: float = 1.0,
        retry_after: int = 1,
    ) -> None:
        parts = urlsplit(upstream)
        self._target = (parts.hostname or LOOPBACK, parts.port or 80)
        self._faults = tuple(faults)
        self._paths = re.compile(paths) if paths else None
        self._rng = random.Random(seed)
        self._rate = rate
        self.stall_seconds = stall_seconds
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._requests = 0
        self._closing = threading.Event()
        self._clients: set[socket.socket] = set()
        self._serve(_handler_for(self))

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def rate(self) -> float:
        with self._lock:
            return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        with self._lock:
            self._rate = value

    @property
    def requests(self) -> int:
        """Requests received so far (faulty or not)."""
        with self._lock:
            return self._requests

    def injected(self) -> dict[str, int]:
        """Faults injected so far, by kind (only kinds injected at least once)."""
        with self._lock:
            return {str(kind): n for kind, n in self._counts.items()}

    def close(self) -> None:
        self._closing.set()
        self.stop()
        with self._lock:
            clients = list(self._clients)
        for sock in clients:  # keep-alive connections idle in their handler threads
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what each request gets ---------------------------------------------------------

    def draw(self, method: str, path: str) -> Fault | None:
        """The fault for one request, or None to forward it untouched."""
        if self._paths is not None and not self._paths.search(path):
            with self._lock:
                self._requests += 1
            return None
        allowed = [f for f in self._faults if method == "GET" or f not in BODY_FAULTS]
        with self._lock:
            self._requests += 1
            if not allowed or self._rng.random() >= self._rate:
                return None
            return self._rng.choice(allowed)

    def extra_headers(self) -> list[tuple[str, str]]:
        """Headers added to the answer of the request :meth:`draw` was last called for
        in this thread (none here; a stub imitating an upstream adds its own)."""
        return []

    def count(self, fault: Fault) -> None:
        with self._lock:
            self._counts[fault] += 1

    def pick(self, choices: tuple[int, ...]) -> int:
        with self._lock:
            return self._rng.choice(choices)

    def send_body(
        self,
        path: str,
        source: io.BufferedIOBase,
        sink: io.BufferedIOBase,
        fault: Fault | None,
        length: int,
    ) -> bool:
        """Copy the upstream's body of ``length`` bytes to the client, applying ``fault``
        (a body fault). False when the connection must be closed afterwards."""
        half = length // 2
        if fault is Fault.FLIP:
            with self._lock:
                at = self._rng.randrange(length)
            self._copy(source, sink, at)
            sink.write(bytes([source.read(1)[0] ^ 0xFF]))
            self._copy(source, sink, length - at - 1)
        elif fault is Fault.TRUNCATE:
            self._copy(source, sink, half)
            return False
        elif fault is Fault.STALL:
            self._copy(source, sink, half)
            sink.flush()
            self._closing.wait(self.stall_seconds)
            self._copy(source, sink, length - half)
        else:
            self._copy(source, sink, length)
        return True

    @staticmethod
    def _copy(source: io.BufferedIOBase, sink: io.BufferedIOBase, size: int) -> None:
        while size > 0 and (chunk := source.read(min(CHUNK, size))):
            sink.write(chunk)
            size -= len(chunk)

    def track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._clients.add if add else self._clients.discard)(sock)

    @property
    def target(self) -> tuple[str, int]:
        return self._target


def _error_body(status: int) -> bytes:
    code = "TOOMANYREQUESTS" if status == 429 else "UNAVAILABLE"
    return json.dumps({"errors": [{"code": code, "message": "injected fault"}]}).encode()


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(KeptAliveHandler):
        upstream: http.client.HTTPConnection | None = None

        def setup(self) -> None:
            super().setup()
            proxy.track(self.connection, add=True)

        def finish(self) -> None:
            proxy.track(self.connection, add=False)
            if self.upstream is not None:
                self.upstream.close()
            with contextlib.suppress(OSError):
                super().finish()

        def _serve(self) -> None:
            fault = proxy.draw(self.command, self.path)
            try:
                if fault in (Fault.SERVER_ERROR, Fault.THROTTLE):
                    self._refuse(fault)
                elif fault is Fault.RESET:
                    self._reset()
                else:
                    self._forward(fault)
            except OSError:
                self.close_connection = True  # the client went away mid-answer

        do_GET = do_HEAD = _serve

        def _refuse(self, fault: Fault) -> None:
            proxy.count(fault)
            status = 429 if fault is Fault.THROTTLE else proxy.pick(SERVER_ERRORS)
            body = _error_body(status)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if fault is Fault.THROTTLE:
                self.send_header("Retry-After", str(proxy.retry_after))
            for name, value in proxy.extra_headers():
                self.send_header(name, value)
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def _reset(self) -> None:
            """RST, not FIN: SO_LINGER 0, then the socket closed with its reader."""
            proxy.count(Fault.RESET)
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()

        def _ask_upstream(self) -> http.client.HTTPResponse:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            for attempt in (0, 1):  # a kept-alive upstream connection may have been closed
                if self.upstream is None:
                    self.upstream = http.client.HTTPConnection(*proxy.target, timeout=WAIT_SECONDS)
                try:
                    self.upstream.request(self.command, self.path, headers=headers)
                    return self.upstream.getresponse()
                except (OSError, http.client.HTTPException):
                    self.upstream.close()
                    self.upstream = None
                    if attempt:
                        raise
            raise AssertionError("unreachable")

        def _forward(self, fault: Fault | None) -> None:
            reply = self._ask_upstream()
            declared = reply.getheader("Content-Length")
            source: io.BufferedIOBase = reply
            if declared is None:
                source = io.BytesIO(reply.read())
            length = int(declared) if declared is not None else len(source.getbuffer())  # type: ignore[attr-defined]
            self.send_response(reply.status)
            for name, value in reply.getheaders():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(length))
            for name, value in proxy.extra_headers():
                self.send_header(name, value)
            self.end_headers()
            complete = True
            if self.command == "GET" and length > 0:
                applied = fault if 200 <= reply.status < 300 else None
                if applied is not None:
                    proxy.count(applied)
                complete = proxy.send_body(self.path, source, self.wfile, applied, length)
            self.close_connection = self.close_connection or not complete
            if complete and not reply.will_close:
                reply.read()  # the rest, if any: the upstream connection is then reusable
            else:
                self.upstream.close()  # type: ignore[union-attr]
                self.upstream = None

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler
