"""Connections to the address that was checked, not to whatever DNS answers next.

A redirect target or token realm is resolved once, judged (:mod:`.redirects`), and its
address pinned here; the connection is then made to that address while TLS still verifies
the certificate against the host name. Without the pin, a name that resolved to a public
address for the check could resolve to ``169.254.169.254`` for the connection (DNS
rebinding). Hosts without a pin (the upstream's own URLs) resolve as usual.
"""

from __future__ import annotations

import threading
from typing import Any

from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["Pins", "pinned_pools"]


class Pins:
    """host -> the one address its connections go to. Thread-safe."""

    def __init__(self) -> None:
        self._addresses: dict[str, str] = {}
        self._lock = threading.Lock()

    def pin(self, host: str, address: str) -> None:
        with self._lock:
            self._addresses[host.lower()] = address

    def get(self, host: str) -> str | None:
        with self._lock:
            return self._addresses.get(host.lower())


def _pinned(base: type[HTTPConnection], pins: Pins) -> type[HTTPConnection]:
    class Pinned(base):  # type: ignore[valid-type, misc]
        def _new_conn(self) -> Any:
            address = pins.get(self.host)
            if address is None:
                return super()._new_conn()
            # urllib3 connects to _dns_host and names the host (SNI, certificate check,
            # Host header) from it only afterwards: swap it for the connect alone.
            name: str = self._dns_host  # type: ignore[has-type]
            self._dns_host = address
            try:
                return super()._new_conn()
            finally:
                self._dns_host = name

    return Pinned


def pinned_pools(manager: PoolManager, pins: Pins) -> PoolManager:
    """``manager``, its connections made to the addresses ``pins`` holds."""
    http = type(
        "PinnedPool",
        (HTTPConnectionPool,),
        {"ConnectionCls": _pinned(HTTPConnection, pins)},
    )
    https = type(
        "PinnedTLSPool",
        (HTTPSConnectionPool,),
        {"ConnectionCls": _pinned(HTTPSConnection, pins)},
    )
    manager.pool_classes_by_scheme = {"http": http, "https": https}
    return manager
