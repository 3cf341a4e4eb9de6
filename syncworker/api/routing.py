"""Which registry entry a request is for, and whether that entry mirrors what it names.

Pure decisions over the configuration, shared by the webhooks and the REST endpoints:
names are validated by :class:`~syncworker.oci.Reference` exactly as the engine parses
them, before anything is sent to Redis or the broker.
"""

from __future__ import annotations

from syncworker.api.notifications import normal_host
from syncworker.config import Config, RegistryConfig
from syncworker.errors import ConfigError, ContentError, RequestError
from syncworker.oci import Digest, Reference

__all__ = ["entries_for_hosts", "refusal", "registry_entry", "validate_image"]


def registry_entry(config: Config, name: str) -> RegistryConfig:
    """The entry named ``name``; :class:`RequestError` (naming the known ones) if none."""
    try:
        return config.registry(name)
    except ConfigError as exc:
        raise RequestError(f"unknown registry: {exc.message}") from None


def entries_for_hosts(config: Config, hosts: tuple[str, ...]) -> list[RegistryConfig]:
    """The entries with a URL on one of ``hosts`` (several entries may mirror one upstream
    with different content rules), in configuration order."""
    wanted = set(hosts)
    return [
        entry
        for entry in config.registries
        if wanted.intersection(normal_host(host, _scheme(url)) for url, host in _urls(entry))
    ]


def _urls(entry: RegistryConfig) -> zip[tuple[str, str]]:
    return zip(entry.urls, entry.hosts, strict=True)


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def validate_image(repo: str, reference: str, digest: str | None = None) -> Reference:
    """``repo`` with ``reference`` as the engine's ``sync_image`` parses them, and ``digest``
    (the content a notification names) as a digest; :class:`ContentError` if invalid."""
    ref = Reference.of(repo, reference)
    if digest is not None:
        Digest.parse(digest)
    return ref


def refusal(entry: RegistryConfig, repo: str, tag: str | None) -> str | None:
    """Why ``entry`` does not mirror ``repo`` (``:tag``), or None if it does: its ``repos``
    list, then its content rules (prefix glob, then tag rules when there is a tag), over
    ``repo`` as docker spells it (Docker Hub's ``alpine`` is ``library/alpine``)."""
    repo = entry.upstream_repository(repo)
    if entry.repos and repo not in entry.repos:
        return "not in the registry's repos list"
    rules = entry.content_rules()
    try:
        if rules.destination(repo) is None:
            return "no content rule takes this repository"
    except ContentError as exc:
        return str(exc)
    if tag is not None and not rules.filter_tags(repo, [tag]):
        return "the content rule's tag rules exclude this tag"
    return None
