"""Which source each repository of a registry destination mirrors, for every process that
pushes to it (syncworker/store/claim.py says why a destination holds one source, and why a
registry destination keeps its claims here rather than in itself)."""

from __future__ import annotations

import redis

from syncworker.coord.keys import Keys
from syncworker.coord.redisclient import Part, text, translated
from syncworker.coord.scripts import register

__all__ = ["Claims"]


class Claims(Part):
    """Destination repository of one registry (host:port) -> the source it mirrors, as
    ``registry/repository``; kept until deleted by hand, or withdrawn by the sync that took
    it when that sync left nothing there."""

    def __init__(self, client: redis.Redis, keys: Keys, where: str) -> None:
        super().__init__(client, keys, where)
        self._delete_if_equal = register(client, "delete_if_equal")

    @translated
    def claim_destination(self, registry: str, repo: str, source: str) -> str:
        """``source`` claims ``repo`` unless another source did; the holder either way.
        SET NX: of racing first claims exactly one is written."""
        key = self._keys.claim(registry, repo)
        if self._client.set(key, source, nx=True):
            return source
        held = text(self._client.get(key))
        return source if held is None else held  # deleted meanwhile: ours on the next sync

    @translated
    def release_destination(self, registry: str, repo: str, source: str) -> None:
        """Withdraw ``source``'s claim on ``repo``; another source's claim is kept (one
        atomic compare and delete)."""
        self._delete_if_equal(keys=[self._keys.claim(registry, repo)], args=[source])

    @translated
    def destination_claimant(self, registry: str, repo: str) -> str | None:
        return text(self._client.get(self._keys.claim(registry, repo)))
