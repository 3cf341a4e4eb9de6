"""Where a registry destination holds each blob: a hint per digest, shared by every
process that pushes to it, so that a blob one worker uploaded is mounted by the others
instead of fetched again. The registry itself is the truth; a stale hint costs one refused
mount."""

from __future__ import annotations

from syncworker.coord.keys import BLOB_HINT_TTL
from syncworker.coord.redisclient import Part, text, translated

__all__ = ["Hints"]


class Hints(Part):
    """Digest -> a repository of one destination registry that holds it."""

    @translated
    def blob_hint(self, registry: str, digest: str) -> str | None:
        return text(self._client.get(self._keys.blob_hint(registry, digest)))

    @translated
    def set_blob_hint(self, registry: str, digest: str, repo: str) -> None:
        """The latest writer's repository, so that a hint made stale (a repository
        deleted) is replaced by the upload it caused."""
        self._client.set(self._keys.blob_hint(registry, digest), repo, ex=int(BLOB_HINT_TTL))
