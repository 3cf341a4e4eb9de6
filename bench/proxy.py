"""A TCP proxy on loopback that delays every client-to-upstream segment by a fixed time.

HTTP/1.1 clients send a request and wait for its answer on each connection, so delaying the
client's bytes by DELAY adds DELAY to every request (and to each new connection's first
request), as a far-away upstream would. Bytes are queued with their due time and forwarded
by a second thread, so a large request body is not slowed beyond the one delay, and the
upstream-to-client direction is passed through untouched (full bandwidth).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time

from tests.support.ports import LOOPBACK

__all__ = ["DelayProxy"]

BUFFER = 256 * 1024
BACKLOG = 256


class DelayProxy:
    """`with DelayProxy(upstream_port, delay=0.02) as proxy:` then talk to `proxy.port`."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.delay = delay
        self._upstream = (LOOPBACK, upstream_port)
        self._listener = socket.create_server((LOOPBACK, 0), backlog=BACKLOG)
        self.port: int = self._listener.getsockname()[1]
        self._closing = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="proxy-accept", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> DelayProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()
        self._acceptor.join(timeout=5)

    def _track(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._sockets.add(sock)

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._track(client)
            self._track(upstream)
            threading.Thread(target=self._serve, args=(client, upstream), daemon=True).start()

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        """Both directions of one connection; both sockets closed when both have ended."""
        back = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        back.start()
        self._delayed(client, upstream)
        back.join()
        with self._lock:
            self._sockets.difference_update((client, upstream))
        client.close()
        upstream.close()

    def _delayed(self, src: socket.socket, dst: socket.socket) -> None:
        """Read from the client now; a sender thread writes each chunk DELAY later."""
        pending: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def sender() -> None:
            while True:
                due, data = pending.get()
                if not data:
                    break
                time.sleep(max(0.0, due - time.monotonic()))
                try:
                    dst.sendall(data)
                except OSError:
                    break
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        while True:
            try:
                data = src.recv(BUFFER)
            except OSError:
                data = b""
            pending.put((time.monotonic() + self.delay, data))
            if not data:
                break
        thread.join()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(BUFFER)
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
