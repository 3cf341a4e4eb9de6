"""Pure decisions: which tags are special, which children and blobs an image needs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from syncworker.oci import Descriptor, Digest, Manifest, Platform

__all__ = [
    "TagPlan",
    "blobs_to_copy",
    "children_to_copy",
    "plan_tags",
    "special_tag_subject",
    "unchanged",
]

# cosign's legacy tags (sha256-<hex>.sig|.att|.sbom) and the OCI referrers tag schema
# (distribution-spec spec.md#referrers-tag-schema: sha256-<hex>) name the image they are
# about; they are mirrored with that image, whatever the tag rules say.
_SPECIAL_TAG = re.compile(r"^(sha256|sha512)-([a-f0-9]{64}|[a-f0-9]{128})(\.sig|\.att|\.sbom)?$")


def special_tag_subject(tag: str) -> str | None:
    """The ``alg:hex`` digest a signature/attestation/referrers tag is about, else None."""
    match = _SPECIAL_TAG.match(tag)
    if match is None:
        return None
    return f"{match.group(1)}:{match.group(2)}"


@dataclass(frozen=True, slots=True)
class TagPlan:
    """Upstream tags split into ordinary tags (already filtered) and special ones."""

    ordinary: list[str]
    special: dict[str, str]  # tag -> digest of the image it is about


def plan_tags(all_tags: Iterable[str], kept: Iterable[str]) -> TagPlan:
    """``kept`` are the tags the content rule keeps; special tags are set aside whatever
    the rule said, to be taken only if their subject is mirrored."""
    special = {t: s for t in all_tags if (s := special_tag_subject(t)) is not None}
    ordinary = sorted(t for t in kept if t not in special)
    return TagPlan(ordinary, special)


def children_to_copy(index: Manifest, platforms: Sequence[Platform]) -> list[Descriptor]:
    """Children of an index to mirror: all of them, or those matching ``platforms``.

    A child with no platform (an attestation, an artifact) is kept: filtering is about
    architectures, and such children are not images of another architecture.
    """
    if not platforms:
        return list(index.children)
    return [
        child
        for child in index.children
        if child.platform is None
        or child.platform.os == "unknown"
        or any(want.matches(child.platform) for want in platforms)
    ]


def blobs_to_copy(manifest: Manifest) -> list[Descriptor]:
    """Config and layers, minus non-distributable layers (fetched by runtimes from their
    ``urls``, never served by registries: image-spec layer.md)."""
    seen: set[Digest] = set()
    out = []
    for blob in manifest.blobs:
        if blob.is_distributable and blob.digest not in seen:
            seen.add(blob.digest)
            out.append(blob)
    return out


def unchanged(stored: Mapping[str, Digest], tag: str, upstream: Digest) -> bool:
    """Whether the store already holds ``tag`` at the upstream digest (the no-op test)."""
    return stored.get(tag) == upstream
