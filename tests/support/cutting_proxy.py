"""A loopback HTTP/1.1 proxy in front of a destination registry that cuts blob uploads.

    with CuttingProxy(dest.url, larger_than=4 * MiB) as proxy:   # then push to proxy.url
        ...
        proxy.cut                                                 # uploads cut so far

Every request (any method, its body included) is forwarded to the registry and its answer
sent back, hop-by-hop headers aside; the ``Host`` header is kept, so the registry's
``Location`` URLs name the proxy. The first ``cuts`` blob upload ``PUT`` requests whose
body is larger than ``larger_than`` are cut part-way: half the body is read, then the
client's connection is reset (TCP RST) and nothing reaches the registry. (The upstream side
of faults, GET and HEAD only, is tests/support/fault_proxy.py.)
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.support.fault_proxy import CHUNK, HOP_BY_HOP, WAIT_SECONDS
from tests.support.loopback import KeptAliveHandler, LoopbackServer
from tests.support.ports import LOOPBACK

__all__ = ["CuttingProxy"]


class CuttingProxy(LoopbackServer):
    """Forwards everything to ``registry``; cuts the first ``cuts`` large blob uploads."""

    def __init__(self, registry: str, *, larger_than: int, cuts: int = 1) -> None:
        parts = urlsplit(registry)
        self.target = (parts.hostname or LOOPBACK, parts.port or 80)
        self.larger_than = larger_than
        self._left = cuts
        self._lock = threading.Lock()
        self.cut = 0
        self._serve(_handler_for(self))

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def should_cut(self, method: str, path: str, length: int) -> bool:
        if method != "PUT" or "/blobs/uploads/" not in path or length <= self.larger_than:
            return False
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            self.cut += 1
            return True


def _handler_for(proxy: CuttingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(KeptAliveHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if proxy.should_cut(self.command, self.path, length):
                self._cut(length)
                return
            try:
                self._forward(length)
            except OSError:
                self.close_connection = True  # the client went away mid-answer

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def _cut(self, length: int) -> None:
            """Half the body read, then RST (SO_LINGER 0): an upload broken part-way."""
            self.rfile.read(length // 2)
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()

        def _forward(self, length: int) -> None:
            upstream = http.client.HTTPConnection(*proxy.target, timeout=WAIT_SECONDS)
            try:
                upstream.putrequest(
                    self.command, self.path, skip_host=True, skip_accept_encoding=True
                )
                for name, value in self.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        upstream.putheader(name, value)
                upstream.endheaders()
                left = length
                while left > 0 and (chunk := self.rfile.read(min(CHUNK, left))):
                    upstream.send(chunk)
                    left -= len(chunk)
                reply = upstream.getresponse()
                body = reply.read()
                self.send_response(reply.status)
                for name, value in reply.getheaders():
                    # A HEAD's Content-Length is the size of what a GET would send.
                    keep = self.command == "HEAD" or name.lower() != "content-length"
                    if name.lower() not in HOP_BY_HOP and keep:
                        self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            finally:
                upstream.close()

        def finish(self) -> None:
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler
