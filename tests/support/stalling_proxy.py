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
    ``after`` bytes until :meth:`release` (or WAIT_SECONDS pass)."""

    def __init__(self, upstream: str, digest: str, after: int) -> None:
        self._stall_path = f"/blobs/{digest}"
        self._after = after
        self._released = threading.Event()
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
        sent = 0
        while chunk := source.read(CHUNK if sent >= self._after else self._after):
            sink.write(chunk)
            sent += len(chunk)
            if sent >= self._after and not self._released.is_set():
                sink.flush()
                self._released.wait(WAIT_SECONDS)
        return True
