"""Real, deterministic images generated from a seed: the same seed gives the same digests.

Layers are real tar archives (a few files of seeded random bytes) compressed with gzip at
mtime 0; configs carry `rootfs.diff_ids` (sha256 of the uncompressed tar, image-spec
config.md). Builders return `Manifest` values that `tests.support.push.push_image` uploads.

    make_image(seed)                         OCI (or fmt="docker" schema 2) single-platform image
    make_index(seed)                         OCI index (or fmt="docker" manifest list), 2 platforms
    make_artifact(subject, ...)              OCI artifact: artifactType, empty config, subject
    make_cosign_signature(image, ...)        cosign's tag-based signature (`sha256-<hex>.sig`)
    make_foreign_layer_image(seed)           Docker schema 2 with a non-distributable layer
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

__all__ = [
    "COSIGN_SIMPLESIGNING",
    "DEFAULT_LAYER_SIZE",
    "DEFAULT_PLATFORMS",
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER",
    "DOCKER_LAYER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "EMPTY_CONFIG",
    "GZIP_LEVEL",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "Blob",
    "Manifest",
    "canonical_json",
    "cosign_signature_tag",
    "make_artifact",
    "make_cosign_signature",
    "make_foreign_layer_image",
    "make_image",
    "make_index",
    "make_layer",
    "referrers_tag",
    "sha256_digest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"

# Small by default: the suite pushes hundreds of layers; scale tests pass layer_size.
DEFAULT_LAYER_SIZE = 2048
FILES_PER_LAYER = 3
# gzip's own default. The content is random, so for big layers (benchmarks) level 1 is
# as small and several times faster; the level is part of the seed (other bytes, digest).
GZIP_LEVEL = 9
# (os, architecture, variant) of the multi-arch images (image-spec image-index.md platform).
DEFAULT_PLATFORMS: tuple[tuple[str, str, str | None], ...] = (
    ("linux", "amd64", None),
    ("linux", "arm64", "v8"),
)
_FORMATS = {
    "oci": (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, OCI_INDEX),
    "docker": (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST_LIST),
}


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Stable bytes for a JSON document, so digests depend only on content."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def referrers_tag(subject_digest: str) -> str:
    """Tag of the referrers tag-schema fallback (distribution-spec, "Referrers Tag Schema")."""
    algorithm, _, encoded = subject_digest.partition(":")
    return f"{algorithm}-{encoded[:64]}"


def cosign_signature_tag(image_digest: str) -> str:
    """cosign's tag for the signatures of `image_digest`: `sha256-<hex>.sig`."""
    return referrers_tag(image_digest) + ".sig"


@dataclass(frozen=True)
class Blob:
    """Content plus the media type its descriptor gets; `diff_id` for layers."""

    data: bytes = field(repr=False)
    media_type: str
    diff_id: str | None = None

    @cached_property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


EMPTY_CONFIG = Blob(b"{}", OCI_EMPTY)


@dataclass(frozen=True)
class Manifest:
    """A manifest's exact bytes and what a push needs: blobs, children, subject."""

    raw: bytes = field(repr=False)
    media_type: str
    blobs: tuple[Blob, ...] = field(default=(), repr=False)
    children: tuple[Manifest, ...] = field(default=(), repr=False)
    platform: Mapping[str, str] | None = None

    @cached_property
    def digest(self) -> str:
        return sha256_digest(self.raw)

    @property
    def size(self) -> int:
        return len(self.raw)

    @cached_property
    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.raw)
        return value

    @property
    def subject(self) -> dict[str, Any] | None:
        return self.json.get("subject")

    @property
    def artifact_type(self) -> str | None:
        """artifactType, else the config media type (distribution-spec, listing referrers)."""
        value = self.json.get("artifactType") or self.json.get("config", {}).get("mediaType")
        return str(value) if value else None

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        desc = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            desc["platform"] = dict(self.platform)
        return {**desc, **extra}

    def referrer_descriptor(self) -> dict[str, Any]:
        """This manifest as an entry of its subject's referrers index."""
        desc = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            desc["artifactType"] = self.artifact_type
        if self.json.get("annotations"):
            desc["annotations"] = self.json["annotations"]
        return desc

    def walk(self) -> Iterator[Manifest]:
        """Children first, then this manifest: the order a push must follow."""
        for child in self.children:
            yield from child.walk()
        yield self

    def all_blob_digests(self) -> set[str]:
        return {blob.digest for m in self.walk() for blob in m.blobs}


def _rng(seed: object) -> random.Random:
    return random.Random(hashlib.sha256(repr(seed).encode()).digest())


def make_layer(
    seed: object,
    *,
    size: int = DEFAULT_LAYER_SIZE,
    media_type: str = OCI_LAYER,
    compresslevel: int = GZIP_LEVEL,
) -> Blob:
    """A gzip'd tar of FILES_PER_LAYER files holding `size` seeded random bytes in total."""
    rng = _rng(("layer", seed))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for index in range(FILES_PER_LAYER):
            content = rng.randbytes(size // FILES_PER_LAYER + (index < size % FILES_PER_LAYER))
            info = tarfile.TarInfo(f"data/{_slug(seed)}/file{index}.bin")
            info.size, info.mtime, info.mode = len(content), 0, 0o644
            tar.addfile(info, io.BytesIO(content))
    compressed = io.BytesIO()
    # mtime=0 and no file name: gzip output depends on the tar bytes only.
    with gzip.GzipFile(
        fileobj=compressed, mode="wb", mtime=0, filename="", compresslevel=compresslevel
    ) as gz:
        gz.write(raw.getvalue())
    return Blob(compressed.getvalue(), media_type, diff_id=sha256_digest(raw.getvalue()))


def _slug(seed: object) -> str:
    return hashlib.sha256(repr(seed).encode()).hexdigest()[:12]


def _config(platform: tuple[str, str, str | None], layers: Sequence[Blob], media_type: str) -> Blob:
    os_name, arch, variant = platform
    config: dict[str, Any] = {
        "architecture": arch,
        "os": os_name,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
    }
    if variant:
        config["variant"] = variant
    return Blob(canonical_json(config), media_type)


def _platform_dict(platform: tuple[str, str, str | None]) -> dict[str, str]:
    os_name, arch, variant = platform
    return {"architecture": arch, "os": os_name, **({"variant": variant} if variant else {})}


def make_image(
    seed: object,
    *,
    layers: int = 2,
    base: Sequence[Blob] = (),
    fmt: str = "oci",
    platform: tuple[str, str, str | None] = DEFAULT_PLATFORMS[0],
    layer_size: int = DEFAULT_LAYER_SIZE,
    annotations: Mapping[str, str] | None = None,
) -> Manifest:
    """A single-platform image: `base` layers (shared with other images) then `layers` own."""
    manifest_type, config_type, layer_type, _ = _FORMATS[fmt]
    own = [make_layer((seed, i, platform), size=layer_size) for i in range(layers)]
    all_layers = [replace(layer, media_type=layer_type) for layer in [*base, *own]]
    config = _config(platform, all_layers, config_type)
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in all_layers],
    }
    if annotations:
        body["annotations"] = dict(annotations)
    return Manifest(
        canonical_json(body),
        manifest_type,
        blobs=(config, *all_layers),
        platform=_platform_dict(platform),
    )


def make_index(
    seed: object,
    *,
    fmt: str = "oci",
    platforms: Sequence[tuple[str, str, str | None]] = DEFAULT_PLATFORMS,
    layers: int = 2,
    base: Sequence[Blob] = (),
    layer_size: int = DEFAULT_LAYER_SIZE,
) -> Manifest:
    """An OCI index (fmt="oci") or Docker manifest list (fmt="docker") of one image each."""
    _, _, _, index_type = _FORMATS[fmt]
    children = tuple(
        make_image(seed, layers=layers, base=base, fmt=fmt, platform=p, layer_size=layer_size)
        for p in platforms
    )
    body = {
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [child.descriptor() for child in children],
    }
    return Manifest(canonical_json(body), index_type, children=children)


def make_artifact(
    subject: Manifest | None,
    *,
    artifact_type: str,
    payload: bytes,
    payload_media_type: str = "application/octet-stream",
    annotations: Mapping[str, str] | None = None,
) -> Manifest:
    """An OCI 1.1 artifact: `artifactType`, the empty config `{}`, one payload layer, subject."""
    layer = Blob(payload, payload_media_type)
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY_CONFIG.descriptor(),
        "layers": [layer.descriptor()],
    }
    if subject is not None:
        body["subject"] = {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        }
    if annotations:
        body["annotations"] = dict(annotations)
    return Manifest(canonical_json(body), OCI_MANIFEST, blobs=(EMPTY_CONFIG, layer))


def make_cosign_signature(image: Manifest, *, reference: str, seed: object = 0) -> Manifest:
    """cosign's classic signature image: simplesigning payload layer, signature annotation."""
    payload = canonical_json(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": image.digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    )
    signature = base64.b64encode(_rng(("sig", seed, image.digest)).randbytes(64)).decode()
    layer = Blob(payload, COSIGN_SIMPLESIGNING)
    config = Blob(
        canonical_json(
            {
                "architecture": "",
                "os": "",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
            }
        ),
        OCI_CONFIG,
    )
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor(annotations={"dev.cosignproject.cosign/signature": signature})],
    }
    return Manifest(canonical_json(body), OCI_MANIFEST, blobs=(config, layer))


def make_foreign_layer_image(
    seed: object, *, url: str = "https://example.invalid/windows-base.tar.gz"
) -> Manifest:
    """Docker schema 2 whose first layer is foreign: listed with `urls`, never pushed."""
    foreign = make_layer(("foreign", seed), media_type=DOCKER_FOREIGN_LAYER)
    own = make_layer(("own", seed), media_type=DOCKER_LAYER)
    platform = ("windows", "amd64", None)
    config = _config(platform, [foreign, own], DOCKER_CONFIG)
    body = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": config.descriptor(),
        "layers": [foreign.descriptor(urls=[url]), own.descriptor()],
    }
    return Manifest(
        canonical_json(body),
        DOCKER_MANIFEST,
        blobs=(config, own),
        platform=_platform_dict(platform),
    )
