"""Free loopback ports and waiting for a server to answer."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

__all__ = ["LOOPBACK", "LoopbackAddress", "free_port", "wait_until"]

LOOPBACK = "127.0.0.1"


class LoopbackAddress:
    """The address of a server of ours on a loopback ``port``, reached by ``scheme``."""

    port: int
    scheme: str = "http"

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as used in image references."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """``scheme://127.0.0.1:PORT``, no trailing slash."""
        return f"{self.scheme}://{self.host}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The port is released before the caller binds it, so a race is possible; servers started
    by the fixtures retry on a fresh port when the bind fails.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.05,
    alive: Callable[[], bool] = lambda: True,
) -> bool:
    """Poll `ready` until it is true (True), `alive` turns false or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        if not alive():
            return False
        time.sleep(interval)
    return ready()
