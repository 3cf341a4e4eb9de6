"""How a client talks to one upstream: TLS, retries, timeouts, pool size."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_BLOB_SIZE", "ClientOptions"]

# Larger than any real layer (the largest public ones are a few tens of GiB), small enough
# that a descriptor claiming petabytes fails at once instead of filling a disk.
DEFAULT_MAX_BLOB_SIZE = 64 * 1024**3


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
    #: A blob declared (or streamed) larger than this fails its tag instead of being copied.
    max_blob_size: int = DEFAULT_MAX_BLOB_SIZE
    #: zot's reqPerSec: requests per second to this upstream, for all its senders together
    #: (see ``limits``); None: no limit.
    req_per_sec: float | None = None
    #: zot's reqConcurrent: requests in flight to this upstream, for all its senders
    #: together; None: no limit.
    req_concurrent: int | None = None
    #: Our downloadRate: bytes per second read from this upstream, for all its readers
    #: together (see ``bandwidth``); None: no cap.
    download_rate: int | None = None
    #: Our pullBudgetReserve: pulls of the upstream's declared budget left unspent.
    pull_budget_reserve: int = 0

    @property
    def limited(self) -> bool:
        """Whether requests to this upstream go through a limiter at all."""
        return self.req_per_sec is not None or self.req_concurrent is not None
