"""Descriptors, and the parts of a manifest or index that a mirror follows.

A manifest's bytes are never re-serialised: the parsed :class:`Manifest` only says what it
points at, and the caller stores the bytes exactly as received so the digest is preserved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from syncworker.errors import ContentError, SizeLimitError
from syncworker.oci import mediatypes
from syncworker.oci.digest import Digest
from syncworker.oci.platform import Platform

__all__ = ["MAX_MANIFEST_BYTES", "Descriptor", "Manifest", "parse_manifest"]

# distribution-spec: registries SHOULD accept manifests of at least 4 MiB and MAY reject
# larger ones; a manifest larger than this from an upstream is refused (a hostile upstream
# could otherwise make every worker buffer gigabytes).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


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
        if not isinstance(value, Mapping):
            raise ContentError("descriptor is not an object")
        try:
            size = value["size"]
            media_type = value["mediaType"]
            digest = Digest.parse(value["digest"])
        except KeyError as exc:
            raise ContentError(f"descriptor lacks {exc.args[0]!r}") from None
        except TypeError:
            raise ContentError("descriptor has a field of the wrong type") from None
        if not isinstance(size, int) or size < 0 or not isinstance(media_type, str):
            raise ContentError(f"descriptor {digest} has a bad size or mediaType")
        platform = value.get("platform")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            platform=Platform.from_json(platform) if isinstance(platform, Mapping) else None,
            annotations=dict(value.get("annotations") or {}),
            artifact_type=value.get("artifactType"),
            urls=tuple(value.get("urls") or ()),
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
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ContentError(f"manifest {digest} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ContentError(f"manifest {digest} is not a JSON object")
    kind = body.get("mediaType") or media_type or ""
    if body.get("schemaVersion") != 2:
        raise ContentError(f"manifest {digest}: schemaVersion {body.get('schemaVersion')!r}")
    _check_declared_type(body, media_type, digest)
    if kind not in mediatypes.MANIFEST_TYPES:
        kind = mediatypes.OCI_INDEX if "manifests" in body else mediatypes.OCI_MANIFEST
    children: tuple[Descriptor, ...] = ()
    blobs: tuple[Descriptor, ...] = ()
    if kind in mediatypes.INDEX_TYPES:
        children = tuple(Descriptor.from_json(d) for d in _list(body, "manifests", digest))
    else:
        config = body.get("config")
        head = (Descriptor.from_json(config),) if config is not None else ()
        blobs = head + tuple(Descriptor.from_json(d) for d in _list(body, "layers", digest))
    subject = body.get("subject")
    return Manifest(
        media_type=kind,
        digest=digest,
        size=len(raw),
        children=children,
        blobs=blobs,
        subject=Descriptor.from_json(subject) if subject is not None else None,
        artifact_type=body.get("artifactType") or _config_type(body),
        annotations=dict(body.get("annotations") or {}),
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


def _config_type(body: dict[str, Any]) -> str | None:
    # image-spec manifest.md: with no artifactType, the config's mediaType names the artifact.
    config = body.get("config")
    if isinstance(config, Mapping) and config.get("mediaType") not in (
        None,
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    ):
        return str(config["mediaType"])
    return None
