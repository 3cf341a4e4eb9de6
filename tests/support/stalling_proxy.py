"""A loopback HTTP proxy in front of a registry that holds one blob's body part-way.

    proxy = StallingProxy(server.url, digest, after=8 * MiB)   # then mirror from proxy.url
    ...                                                         # the copy is stuck mid-blob
    proxy.release()                                             # let it (or a retry) finish

Used to kill a mirror reliably in the middle of writing a blob. GET and HEAD only; every
answer is forwarded as is (status, headers, body), hop-by-hop headers aside.
"""

from __future__ import annotations

import http.client
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.support.ports import LOOPBACK

__all__ = ["StallingProxy"]

CHUNK = 1024 * 1024
# How long a held body, or an upstream answer, may take before the proxy gives up.
WAIT_SECONDS = 120.0
# Headers that describe one connection, not the message (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection"})


class StallingProxy:
    """Forwards GET/HEAD to ``upstream``; the body of blob ``digest`` pauses after
    ``after`` bytes until :meth:`release` (or WAIT_SECONDS pass)."""

    def __init__(self, upstream: str, digest: str, after: int) -> None:
        parts = urlsplit(upstream)
        self._target = (parts.hostname or LOOPBACK, parts.port or 80)
        self._stall_path = f"/blobs/{digest}"
        self._after = after
        self._released = threading.Event()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def _copy_body(
        self, source: http.client.HTTPResponse, sink: io.BufferedIOBase, stall: bool
    ) -> None:
        sent = 0
        while chunk := source.read(CHUNK if not stall or sent >= self._after else self._after):
            sink.write(chunk)
            sent += len(chunk)
            if stall and sent >= self._after and not self._released.is_set():
                sink.flush()
                self._released.wait(WAIT_SECONDS)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                upstream = http.client.HTTPConnection(*proxy._target, timeout=WAIT_SECONDS)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    upstream.request(self.command, self.path, headers=headers)
                    reply = upstream.getresponse()
                    self.send_response(reply.status)
                    for name, value in reply.getheaders():
                        if name.lower() not in HOP_BY_HOP:
                            self.send_header(name, value)
                    body = b""
                    if reply.getheader("Content-Length") is None:
                        body = reply.read()
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command == "GET":
                        self.wfile.write(body)
                        stall = self.path.split("?")[0].endswith(proxy._stall_path)
                        proxy._copy_body(reply, self.wfile, stall)
                except OSError:
                    pass  # the client was killed mid-body: nothing to tell anyone
                finally:
                    upstream.close()

            do_GET = do_HEAD = _forward

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler
