"""Which upstream repository fills a destination repository, for a check and a repair.

The claim the store records (the source that last wrote it) when it names a configured
registry; otherwise the content rules read backwards, which must give one source: a
repair copies from it, and a check keeps the children its platforms keep.
"""

from __future__ import annotations

from collections.abc import Mapping

from syncworker.engine.upstream import Upstream
from syncworker.errors import ConfigError, StoreError
from syncworker.store import Source, Store

__all__ = ["configured_sources", "source_of"]


def configured_sources(upstreams: Mapping[str, Upstream], dest_repo: str) -> list[Source]:
    """Every (registry, upstream repository) whose content rules store into ``dest_repo``."""
    return [
        Source(name, repo)
        for name, up in upstreams.items()
        for repo in up.rules.sources(dest_repo)
        if not up.repos or repo in up.repos
    ]


def source_of(store: Store, upstreams: Mapping[str, Upstream], dest_repo: str) -> Source:
    """The one source of ``dest_repo``; :class:`ConfigError` saying why there is none."""
    try:
        claimed = store.claimant(dest_repo)
    except StoreError:
        claimed = None  # the rules still tell, and a repair checks the claim under the lock
    if claimed is not None and claimed.registry in upstreams:
        return claimed
    found = configured_sources(upstreams, dest_repo)
    if len(found) == 1:
        return found[0]
    names = ", ".join(map(str, found)) or "no configured registry"
    raise ConfigError(
        "extensions.sync.registries",
        f"{dest_repo}: its source is not one upstream repository ({names})",
    )
