"""How a client talks to one upstream: TLS, retries, timeouts, pool size."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClientOptions"]


@dataclass(frozen=True)
class ClientOptions:
    """Per-upstream settings; the names follow zot's sync config where it has one."""

    tls_verify: bool = True
    #: zot's certDir: ``ca.crt`` trusted for this upstream, ``client.cert`` + ``client.key``
    #: presented for mutual TLS when both exist.
    cert_dir: str | None = None
    max_retries: int = 3
    #: Base of the exponential backoff, in seconds.
    retry_delay: float = 0.5
    #: Connect and read timeout of every request, in seconds.
    timeout: float = 30.0
    #: Keep-alive connections kept per host; size it to the number of threads using the client.
    pool_size: int = 32
    user_agent: str = "syncworker/0.1"
