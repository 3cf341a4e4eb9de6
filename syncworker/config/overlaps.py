"""Overlaps a configuration shows on its own: two sources mapped into one destination.

A destination repository holds one (registry, upstream repository); the store records which
(``syncworker.store.claim``) and refuses any other at run time. The names a configuration
spells out literally, ``repos`` entries and content ``prefix`` values without a wildcard,
can be checked before anything runs: each is mapped through its registry's content rules
(the first matching rule, as a sync would) and two different sources landing on one
destination are a configuration error. Globs are left to the run: whether two of them meet
depends on what the upstreams list.
"""

from __future__ import annotations

from collections.abc import Iterator

from syncworker.config.model import Config
from syncworker.config.syncextension import RegistryConfig
from syncworker.errors import SyncworkerError

__all__ = ["overlap_problems"]

# Characters that make a content prefix a glob (syncworker.filters.globs).
_GLOB_CHARS = frozenset("*?[{\\")


def overlap_problems(config: Config) -> list[tuple[str, str]]:
    """``(path, message)`` for each literal name mapped into a destination that another
    source already fills, naming both sources and where each is configured."""
    first: dict[str, tuple[str, str]] = {}  # destination -> (source, its path)
    problems = []
    for i, registry in enumerate(config.registries):
        rules = registry.content_rules()
        for name, where in _literal_names(registry, f"extensions.sync.registries[{i}]"):
            try:
                dest = rules.destination(name)
            except SyncworkerError:
                continue  # a name no rule can map: the run reports it
            if dest is None:
                continue
            source = f"{registry.name}/{name}"
            holder, held_at = first.setdefault(dest, (source, where))
            if holder != source:
                problems.append(
                    (
                        where,
                        f"maps {source} into {dest!r}, which {held_at} already fills from"
                        f" {holder}: a destination repository holds one source",
                    )
                )
    return problems


def _literal_names(registry: RegistryConfig, at: str) -> Iterator[tuple[str, str]]:
    for j, repo in enumerate(registry.repos):
        yield repo, f"{at}.repos[{j}]"
    for j, content in enumerate(registry.content):
        prefix = str(content.prefix).strip("/")
        if prefix and _GLOB_CHARS.isdisjoint(prefix):
            yield prefix, f"{at}.content[{j}].prefix"
