"""A threaded HTTP server on a free loopback port, for the test support's own servers."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

from tests.support.ports import LOOPBACK

__all__ = ["KeptAliveHandler", "LoopbackServer"]


class KeptAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, connections kept alive, with ``TCP_NODELAY``: a handler writes an answer's
    headers and its body apart, and without it the body waits for the client's delayed ACK
    (40 ms on Linux) on a kept-alive connection."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True


class LoopbackServer:
    """Serves ``handler`` on its own thread from :meth:`_serve` until :meth:`stop`."""

    _server: ThreadingHTTPServer
    _thread: threading.Thread

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer((LOOPBACK, 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
