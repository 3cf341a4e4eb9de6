"""A loopback HTTP proxy in front of a registry that holds one blob's body part-way.

    proxy = StallingProxy(server.url, digest, after=8 * MiB)   # then mirror from proxy.url
    ...                                                         # the copy is stuck mid-blob
    proxy.release()                                             # let it (or a retry) finish

Used to kill a mirror reliably in the middle of writing a blob. GET and HEAD only; every
answer is forwarded as is (status, headers, body), hop-by-hop headers aside: a
:class:`~tests.support.fault_proxy.FaultProxy` that injects no fault and sends that one
body its own way.
"""

from __future__ import annotations

import io
import threading

from tests.support.fault_proxy import CHUNK, WAIT_SECONDS, Fault, FaultProxy

__all__ = ["StallingProxy"]


class StallingProxy(FaultProxy):
    """Forwards GET/HEAD to ``upstream``; the body of blob ``digest`` pauses after
    ``after`` bytes until :meth:`release` (or WAIT_SECONDS pass). With ``trickle``, it does
    not pause but sends ``trickle`` bytes every ``every`` seconds until released or done:
    never idle long enough for a read timeout, never done in useful time.

    ``reached`` is set once a body got to ``after``, ``ended`` once the proxy stopped
    sending it (all sent, or the client gone); ``sent`` counts the bytes of the blob's body
    sent so far (the last GET's)."""

    def __init__(
        self, upstream: str, digest: str, after: int, *, trickle: int = 0, every: float = 0.25
    ) -> None:
        self._stall_path = f"/blobs/{digest}"
        self._after = after
        self._trickle = trickle
        self._every = every
        self._released = threading.Event()
        self.reached = threading.Event()
        self.ended = threading.Event()
        self.sent = 0
        super().__init__(upstream)

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        super().close()

    def send_body(
        self,
        path: str,
        source: io.BufferedIOBase,
        sink: io.BufferedIOBase,
        fault: Fault | None,
        length: int,
    ) -> bool:
        if not path.split("?")[0].endswith(self._stall_path):
            return super().send_body(path, source, sink, fault, length)
        try:
            return self._send_held(source, sink)
        finally:
            self.ended.set()

    def _send_held(self, source: io.BufferedIOBase, sink: io.BufferedIOBase) -> bool:
        self.ended.clear()
        self.sent = 0
        head = source.read(self._after)
        self._send(sink, head)
        if len(head) < self._after:  # the whole body was shorter
            return True
        self.reached.set()
        if not self._trickle:
            self._released.wait(WAIT_SECONDS)
        while not self._released.is_set() and (piece := source.read(self._trickle)):
            self._send(sink, piece)
            self._released.wait(self._every)
        while chunk := source.read(CHUNK):
            self._send(sink, chunk)
        return True

    def _send(self, sink: io.BufferedIOBase, data: bytes) -> None:
        sink.write(data)
        sink.flush()
        self.sent += len(data)
