"""Pure decisions: which tags are special, which blobs an image needs, and what
``index.json`` records for a manifest (which children: ``filters.expected_children``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal

from syncworker.errors import InvalidNameError, NotFoundError, SyncworkerError
from syncworker.filters import special_tag_subject
from syncworker.oci import Descriptor, Digest, Manifest, validate_tag
from syncworker.oci.mediatypes import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

__all__ = [
    "CHILDREN_FOR",
    "UPSTREAM_MEDIA_TYPE",
    "LayoutMediaTypes",
    "as_of_bytes",
    "TagPlan",
    "blobs_to_copy",
    "index_descriptor",
    "plan_tags",
    "relisted",
    "skip_reason",
    "valid_tags",
]

#: How ``index.json`` names Docker schema-2 manifests and lists (``layout_media_types``):
#: ``preserve`` lists the type of the bytes; ``oci`` lists their OCI twin type instead.
LayoutMediaTypes = Literal["preserve", "oci"]
# OCI-layout readers such as skopeo 1.9 and umoci skip index.json entries of Docker types;
# the structures match, so ``oci`` lists the OCI type and keeps Docker's in an annotation.
_OCI_TWIN = {DOCKER_MANIFEST: OCI_MANIFEST, DOCKER_MANIFEST_LIST: OCI_INDEX}
UPSTREAM_MEDIA_TYPE = "io.syncworker.upstream.mediaType"
# On an index's entry: the ``platforms`` setting (``children_key``) its children were
# completed under. While it is the setting of the run, an unchanged index is whole without
# looking its children up; once the setting changes, they are looked up (and the missing
# ones fetched) once, and the entry says so again.
CHILDREN_FOR = "io.syncworker.children-for"


@dataclass(frozen=True, slots=True)
class TagPlan:
    """Upstream tags split into ordinary tags (already filtered) and special ones."""

    ordinary: list[str]
    special: dict[str, Digest]  # tag -> digest of the image it is about


def plan_tags(all_tags: Iterable[str], kept: Iterable[str]) -> TagPlan:
    """``kept`` are the tags the content rule keeps; special tags are set aside whatever
    the rule said, to be taken only if their subject is mirrored."""
    special = {t: s for t in all_tags if (s := special_tag_subject(t)) is not None}
    ordinary = sorted(t for t in kept if t not in special)
    return TagPlan(ordinary, special)


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


def index_descriptor(
    desc: Descriptor, layout_media_types: LayoutMediaTypes, children_for: str | None = None
) -> Descriptor:
    """What index.json records for ``desc``: media type, digest, size, platform (for
    children listed untagged) and artifactType; for an index, ``children_for``
    (``CHILDREN_FOR``) when given.

    The media type is the one of the bytes: a registry serving the layout (zot) sends it as
    ``Content-Type``, and clients refuse a body whose ``mediaType`` differs (distribution's
    ``ocischema``; CVE-2021-41190). ``oci`` trades that for layout readers that skip Docker
    types, keeping the type of the bytes in an annotation.
    """
    media_type, annotations = desc.media_type, {}
    if layout_media_types == "oci" and media_type in _OCI_TWIN:
        annotations = {UPSTREAM_MEDIA_TYPE: media_type}
        media_type = _OCI_TWIN[media_type]
    if desc.is_index and children_for is not None:
        annotations[CHILDREN_FOR] = children_for
    return Descriptor(
        media_type,
        desc.digest,
        desc.size,
        platform=desc.platform,
        annotations=annotations,
        artifact_type=desc.artifact_type,
    )


def as_of_bytes(stored: Descriptor) -> Descriptor:
    """An ``index.json`` entry with the media type of the manifest's bytes (the one it
    was listed under ``oci`` keeps that in an annotation)."""
    original = stored.annotations.get(UPSTREAM_MEDIA_TYPE)
    if original is not None and _OCI_TWIN.get(original) == stored.media_type:
        return replace(stored, media_type=original)
    return stored


def relisted(stored: Descriptor, layout_media_types: LayoutMediaTypes) -> Descriptor | None:
    """The entry ``index.json`` should hold instead of ``stored`` (one this engine wrote)
    under ``layout_media_types``; None if it is right as it is. No download is needed: an
    entry listed under a twin type keeps the type of its bytes in an annotation."""
    original = stored.annotations.get(UPSTREAM_MEDIA_TYPE)
    wanted = index_descriptor(
        as_of_bytes(stored), layout_media_types, stored.annotations.get(CHILDREN_FOR)
    )
    if (wanted.media_type, wanted.annotations.get(UPSTREAM_MEDIA_TYPE)) == (
        stored.media_type,
        original,
    ):
        return None
    return wanted


def skip_reason(exc: SyncworkerError, catalogued: bool) -> str | None:
    """Why a repository whose tag listing raised ``exc`` is skipped rather than failed, or
    None. A catalog may list a repository that has no tags: distribution lists every
    repository with a blob, so a push that stopped after its blobs leaves one whose tag
    list answers 404. A 404 for a repository someone named is a failure."""
    if catalogued and isinstance(exc, NotFoundError):
        return f"listed by the catalog without tags: {exc}"
    return None


def valid_tags(tags: Iterable[str], refused: Callable[[str, InvalidNameError], None]) -> list[str]:
    """The tags of an upstream's list that are valid tag names; each other one is passed
    to ``refused`` (cut to a printable length) and left out."""
    valid = []
    for tag in tags:
        try:
            valid.append(validate_tag(tag))
        except InvalidNameError as exc:
            refused(tag[:128], exc)
    return valid
