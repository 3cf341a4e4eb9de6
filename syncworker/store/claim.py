"""Which source a destination repository mirrors: its claim, recorded where every writer sees it.

A destination repository holds one (registry, upstream repository) pair. Two sources in one
destination make a mirror of neither: with ``prune`` each source's sync deletes the other's
tags, and tags of the same name overwrite each other. So the first sync of a repository
records its source there before writing anything else, and every sync, from any process,
compares its own source with the one recorded, under the repository's lock. A sync that took
the claim and then listed nothing there (its first sync failed: the upstream's host does not
resolve, or answers 401) withdraws it (``release_claim``): the source configured next, the
fix, must not be refused for a sync that left nothing.

Where the record lives:

- an OCI layout (filesystem, S3) keeps it in the store itself, ``<repo>/.claim``, so it holds
  for ``syncworker sync`` without Redis and survives a Redis restarted without persistence.
  It is published whole (a link of a complete temporary, a conditional PUT): a reader sees
  no claim or a whole one, and of two writers racing for a new repository exactly one wins
  (on an S3 server without conditional writes the repository lock is the only guard, as it
  is for ``index.json`` there).
- a registry destination keeps it in Redis (``coord/claims.py``, SET NX) when one is
  configured, else in the process, for one run. A registry holds nothing of ours but
  manifests under tags: a claim there would be a tag in every mirrored repository, seen by
  everyone who lists them and deleted by tag retention policies.

A repository written before claims existed holds none: its next sync claims it (adopts it).
Refusing every such repository would stop every existing mirror until an operator acted,
and the store cannot say which source wrote it; ``validate`` refuses the overlaps a
configuration shows, and from the first claim on the other source is refused. To move a
destination to another source, delete its claim (``<repo>/.claim``, or the Redis key).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from syncworker.errors import ContentError, StoreError
from syncworker.oci.document import load_json

__all__ = [
    "CLAIM_FILE",
    "Source",
    "dump_claim",
    "load_claim",
]

CLAIM_FILE = ".claim"


@dataclass(frozen=True, slots=True)
class Source:
    """An upstream repository of a configured registry: what a destination mirrors."""

    registry: str
    repository: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}"

    @classmethod
    def parse(cls, text: str) -> Source:
        """``registry/repository`` (a registry name holds no ``/``)."""
        registry, _, repository = text.partition("/")
        return cls(registry, repository)


def dump_claim(source: Source) -> bytes:
    return json.dumps({"registry": source.registry, "repository": source.repository}).encode()


def load_claim(raw: bytes, where: str) -> Source | None:
    """The source a claim file names; None for an empty one (a power loss before it became
    durable: the repository is claimed again). Anything else is a StoreError naming
    ``where``: a claim edited by hand must not be taken over silently."""
    if not raw.strip():
        return None
    try:
        doc = load_json(raw, where)
        return Source(_text(doc["registry"]), _text(doc["repository"]))
    except (ContentError, KeyError, TypeError):
        raise StoreError(
            f"{where}: not a claim (want {{'registry': ..., 'repository': ...}});"
            " remove it to let the next sync claim the repository"
        ) from None


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(value)
    return value
