"""The engine's plain values built from a :class:`Config`: one :class:`Upstream` per
registry, and the :class:`Mirror` over them (the engine never reads the config models)."""

from __future__ import annotations

from syncworker.config.model import Config
from syncworker.config.syncextension import RegistryConfig
from syncworker.engine import NO_EVENTS, Events, Locks, Mirror, Upstream
from syncworker.registry.gates import Limiters
from syncworker.store import Store

__all__ = ["build_mirror", "upstream"]


def upstream(config: Config, registry: RegistryConfig) -> Upstream:
    """``registry`` with its credentials resolved (credentialsFile, else docker's config)."""
    return Upstream(
        name=registry.name,
        urls=tuple(registry.urls),
        credentials=config.credentials_for(registry),
        options=registry.client_options(
            config.syncworker.max_blob_size, config.syncworker.client_threads
        ),
        rules=registry.content_rules(),
        platforms=tuple(registry.platforms),
        repos=tuple(sorted(registry.repos)),
        only_signed=registry.only_signed,
        sync_timeout=timeout.total_seconds() if (timeout := registry.sync_timeout) else None,
        prune=registry.prune,
        docker_hub=registry.docker_hub,
    )


def build_mirror(
    config: Config,
    store: Store,
    locks: Locks,
    limiters: Limiters | None = None,
    events: Events = NO_EVENTS,
) -> Mirror:
    """The Mirror of every configured registry; its blob and tag pools serve ``concurrency``
    repositories of ``blob_concurrency`` blobs and ``tagConcurrency`` tags each.
    ``limiters``: where the upstreams' rate limits are held (the Coordinator for a cluster;
    this process when None)."""
    settings = config.syncworker
    return Mirror(
        {reg.name: upstream(config, reg) for reg in config.registries},
        store,
        locks,
        blob_threads=settings.blob_threads,
        tag_threads=settings.tag_threads,
        # index.json's entry types: a registry destination has no index.json to name them in
        layout_media_types=settings.layout_media_types
        if settings.destination is None
        else "preserve",
        tag_concurrency=settings.tag_concurrency,
        limiters=limiters,
        events=events,
    )
