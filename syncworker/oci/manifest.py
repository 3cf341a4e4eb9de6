"""Descriptors, and the parts of a manifest or index that a mirror follows.

A manifest's bytes are never re-serialised: the parsed :class:`Manifest` only says what it
points at, and the caller stores the bytes exactly as received so the digest is preserved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from syncworker.errors import ContentError, MalformedResponseError, SizeLimitError
from syncworker.oci import mediatypes
from syncworker.oci.digest import Digest
from syncworker.oci.document import load_json, optional_str, size_field, str_list, str_map
from syncworker.oci.platform import Platform

__all__ = ["MAX_MANIFEST_BYTES", "Descriptor", "Manifest", "parse_manifest"]

# distribution-spec: registries SHOULD accept manifests of at least 4 MiB and MAY reject
# larger ones; a manifest larger than this from an upstream is refused (a hostile upstream
# could otherwise make every worker buffer gigabytes).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_IMAGE_CONFIG_TYPES = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, value: Any) -> Descriptor:
        """A descriptor from upstream JSON; every field's type is checked."""
        if not isinstance(value, Mapping):
            raise MalformedResponseError("descriptor is not an object")
        digest_text = value.get("digest")
        if not isinstance(digest_text, str):
            raise MalformedResponseError("descriptor lacks a string 'digest'")
        digest = Digest.parse(digest_text)
        what = f"descriptor {digest}"
        media_type = optional_str(value, "mediaType", what)
        if media_type is None:
            raise MalformedResponseError(f"{what} lacks 'mediaType'")
        platform = value.get("platform")
        if platform is not None and not isinstance(platform, Mapping):
            raise MalformedResponseError(f"{what}: 'platform' is not an object")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size_field(value, "size", what),
            platform=Platform.from_json(platform) if platform is not None else None,
            annotations=str_map(value, "annotations", what),
            artifact_type=optional_str(value, "artifactType", what),
            urls=tuple(str_list(value, "urls", what)),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.platform is not None:
            out["platform"] = {"os": self.platform.os, "architecture": self.platform.architecture}
            if self.platform.variant:
                out["platform"]["variant"] = self.platform.variant
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.urls:
            out["urls"] = list(self.urls)
        return out

    @property
    def is_index(self) -> bool:
        return self.media_type in mediatypes.INDEX_TYPES

    @property
    def is_distributable(self) -> bool:
        return self.media_type not in mediatypes.NON_DISTRIBUTABLE_LAYERS


@dataclass(frozen=True, slots=True)
class Manifest:
    """What one manifest or index refers to."""

    media_type: str
    digest: Digest
    size: int
    #: For an index: its child manifests. Empty for an image manifest.
    children: tuple[Descriptor, ...]
    #: For an image manifest: config then layers. Empty for an index.
    blobs: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: Mapping[str, str]

    @property
    def is_index(self) -> bool:
        return self.media_type in mediatypes.INDEX_TYPES

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, artifact_type=self.artifact_type)


def parse_manifest(raw: bytes, media_type: str | None, digest: Digest | None = None) -> Manifest:
    """Parse manifest bytes, checking size, digest (if given) and structure.

    ``media_type`` is the Content-Type the registry sent; the body's own ``mediaType``
    wins when present (image-spec requires it for OCI since 1.0.2; Docker always sets it).
    """
    if len(raw) > MAX_MANIFEST_BYTES:
        raise SizeLimitError(f"manifest of {len(raw)} bytes exceeds {MAX_MANIFEST_BYTES}")
    if digest is not None:
        digest.verify(raw)
    else:
        digest = Digest.of(raw)
    what = f"manifest {digest}"
    body = load_json(raw, what)
    if not isinstance(body, dict):
        raise MalformedResponseError(f"{what} is not a JSON object")
    kind = optional_str(body, "mediaType", what) or media_type or ""
    if body.get("schemaVersion") != 2:
        version = repr(body.get("schemaVersion"))[:40]
        raise ContentError(f"manifest {digest}: schemaVersion {version}")
    _check_declared_type(body, media_type, digest)
    if kind not in mediatypes.MANIFEST_TYPES:
        kind = mediatypes.OCI_INDEX if "manifests" in body else mediatypes.OCI_MANIFEST
    children: tuple[Descriptor, ...] = ()
    blobs: tuple[Descriptor, ...] = ()
    config: Descriptor | None = None
    if kind in mediatypes.INDEX_TYPES:
        children = tuple(Descriptor.from_json(d) for d in _list(body, "manifests", digest))
    else:
        if body.get("config") is not None:
            config = Descriptor.from_json(body["config"])
        head = (config,) if config is not None else ()
        blobs = head + tuple(Descriptor.from_json(d) for d in _list(body, "layers", digest))
    subject = body.get("subject")
    artifact_type = optional_str(body, "artifactType", what)
    return Manifest(
        media_type=kind,
        digest=digest,
        size=len(raw),
        children=children,
        blobs=blobs,
        subject=Descriptor.from_json(subject) if subject is not None else None,
        artifact_type=artifact_type or _config_type(config),
        annotations=str_map(body, "annotations", what),
    )


def _check_declared_type(body: dict[str, Any], served_as: str | None, digest: Digest) -> None:
    """One document must not read as two things (image-spec 1.0.2, CVE-2021-41190): the
    body's mediaType, when set, is the type it was served as."""
    own = body.get("mediaType")
    if own and served_as in mediatypes.MANIFEST_TYPES and own != served_as:
        raise ContentError(f"manifest {digest}: mediaType {own!r} but served as {served_as!r}")
    kind = own or served_as
    if kind in mediatypes.INDEX_TYPES and ("layers" in body or "config" in body):
        raise ContentError(f"manifest {digest}: media type {kind} but has layers or config")
    if kind in mediatypes.MANIFEST_TYPES - mediatypes.INDEX_TYPES and "manifests" in body:
        raise ContentError(f"manifest {digest}: media type {kind} but has manifests")


def _list(body: dict[str, Any], key: str, digest: Digest) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ContentError(f"manifest {digest}: {key} is not a list")
    return value


def _config_type(config: Descriptor | None) -> str | None:
    # image-spec manifest.md: with no artifactType, the config's mediaType names the artifact.
    if config is None or config.media_type in _IMAGE_CONFIG_TYPES:
        return None
    return config.media_type
