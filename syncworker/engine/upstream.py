"""One upstream registry as the engine sees it: plain values, built by the config layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from syncworker.filters import ContentRules
from syncworker.oci import Platform, docker_hub_repository
from syncworker.registry import ClientOptions
from syncworker.registry.auth import Login

__all__ = ["Upstream"]


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where a registry is, how to talk to it, and what of it to mirror."""

    #: The registry's name: task arguments, run state and failures carry it.
    name: str
    #: Base URLs, in failover order.
    urls: tuple[str, ...]
    #: The login of each URL that has one (a failover URL gets only its own); fixed, or
    #: renewed by a credential helper.
    credentials: Mapping[str, Login]
    options: ClientOptions
    rules: ContentRules
    #: Platforms kept of multi-platform indexes; empty keeps them all.
    platforms: tuple[Platform, ...] = ()
    #: Repositories to mirror instead of the upstream's catalog, sorted; empty: the catalog.
    repos: tuple[str, ...] = ()
    #: Mirror only images that carry a signature (zot's ``onlySigned``).
    only_signed: bool = False
    #: Seconds one repository's sync may take (zot's ``syncTimeout``); None: no limit.
    sync_timeout: float | None = None
    #: Remove from the mirror the tags the upstream no longer lists (our ``prune``).
    prune: bool = False
    #: The upstream is Docker Hub: its single-name repositories are ``library/<name>``.
    docker_hub: bool = False

    def repository(self, name: str) -> str:
        """The upstream's name for repository ``name``, as docker spells it."""
        return docker_hub_repository(name) if self.docker_hub else name
