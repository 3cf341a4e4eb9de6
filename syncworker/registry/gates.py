"""What one upstream's traffic passes through besides the protocol: its request budget
(:mod:`.limits`) and its download rate cap (:mod:`.bandwidth`), each shared with every
other client of the same upstream. An upstream without a setting gets no gate for it, so
its requests pay nothing."""

from __future__ import annotations

from dataclasses import dataclass

from syncworker.registry.bandwidth import Bandwidth
from syncworker.registry.limits import Limiter, Limiters
from syncworker.registry.options import ClientOptions

__all__ = ["NO_GATES", "Gates", "gates_for"]


@dataclass(frozen=True)
class Gates:
    """The shared budgets one upstream's stack asks (none: that layer is left out)."""

    limiter: Limiter | None = None
    bandwidth: Bandwidth | None = None


NO_GATES = Gates()


def gates_for(limiters: Limiters, registry: str, options: ClientOptions) -> Gates:
    """The gates of upstream ``registry`` its ``options`` ask for, from ``limiters`` (this
    process's, or the cluster's in Redis)."""
    limiter = None
    if options.limited:
        limiter = limiters.limiter(registry, options.req_per_sec, options.req_concurrent)
    bandwidth = None
    if options.download_rate is not None:
        bandwidth = limiters.bandwidth(registry, options.download_rate)
    return Gates(limiter, bandwidth)
