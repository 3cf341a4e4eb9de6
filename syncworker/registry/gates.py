"""What one upstream's traffic passes through besides the protocol: its request budget
(:mod:`.limits`), its download rate cap (:mod:`.bandwidth`), the pull budget of its login
(:mod:`.budget`) and the manifests that budget was spent on (:mod:`.paid`), each shared
with every other client of the same upstream. An upstream without a setting gets no gate
for it, so its requests pay nothing; every upstream has a pull budget gate, which asks
nothing once an answer shows it has none."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from syncworker.registry.bandwidth import Bandwidth, LocalBandwidth
from syncworker.registry.budget import LocalPullBudget, PullBudget
from syncworker.registry.limits import Limiter, LocalLimiter
from syncworker.registry.options import ClientOptions
from syncworker.registry.paid import LocalPaidManifests, PaidManifests

__all__ = ["NO_GATES", "Gates", "Limiters", "LocalLimiters", "gates_for"]


@dataclass(frozen=True)
class Gates:
    """The shared budgets one upstream's stack asks (none: that layer is left out)."""

    limiter: Limiter | None = None
    bandwidth: Bandwidth | None = None
    budget: PullBudget | None = None
    #: Where manifests the pull budget was spent on are kept (:mod:`.paid`).
    paid: PaidManifests | None = None


NO_GATES = Gates()


class Limiters(Protocol):
    """Makes the limiter and the bandwidth cap of each upstream; the same name gets the
    same shared budget."""

    def limiter(
        self, registry: str, req_per_sec: float | None, max_concurrent: int | None
    ) -> Limiter: ...

    def bandwidth(self, registry: str, bytes_per_sec: int) -> Bandwidth: ...

    def pull_budget(self, registry: str, identity: str) -> PullBudget: ...

    def paid_manifests(self, registry: str) -> PaidManifests: ...


class LocalLimiters:
    """:class:`Limiters` for one process (``syncworker sync`` without Redis)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._made: dict[str, LocalLimiter] = {}
        self._bandwidths: dict[str, LocalBandwidth] = {}
        self._budgets: dict[tuple[str, str], LocalPullBudget] = {}
        self._paid: dict[str, LocalPaidManifests] = {}

    def limiter(
        self, registry: str, req_per_sec: float | None, max_concurrent: int | None
    ) -> Limiter:
        with self._guard:
            found = self._made.get(registry)
            if found is None:
                found = self._made[registry] = LocalLimiter(req_per_sec, max_concurrent)
            return found

    def bandwidth(self, registry: str, bytes_per_sec: int) -> Bandwidth:
        with self._guard:
            found = self._bandwidths.get(registry)
            if found is None:
                found = self._bandwidths[registry] = LocalBandwidth(bytes_per_sec)
            return found

    def pull_budget(self, registry: str, identity: str) -> PullBudget:
        with self._guard:
            found = self._budgets.get((registry, identity))
            if found is None:
                found = self._budgets[registry, identity] = LocalPullBudget()
            return found

    def paid_manifests(self, registry: str) -> PaidManifests:
        with self._guard:
            found = self._paid.get(registry)
            if found is None:
                found = self._paid[registry] = LocalPaidManifests()
            return found


def gates_for(limiters: Limiters, registry: str, options: ClientOptions, identity: str) -> Gates:
    """The gates of upstream ``registry`` its ``options`` ask for, and the pull budget of
    the login ``identity`` (:func:`~.budget.identity_of`), from ``limiters`` (this
    process's, or the cluster's in Redis)."""
    limiter = None
    if options.limited:
        limiter = limiters.limiter(registry, options.req_per_sec, options.req_concurrent)
    bandwidth = None
    if options.download_rate is not None:
        bandwidth = limiters.bandwidth(registry, options.download_rate)
    budget = limiters.pull_budget(registry, identity)
    return Gates(limiter, bandwidth, budget, limiters.paid_manifests(registry))
