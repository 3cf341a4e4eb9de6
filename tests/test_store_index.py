"""Every descriptor the store writes to an index.json is schema-valid (image-spec
descriptor.md), whatever the upstream's manifests said: required fields of the right type
with the size of what is stored, optional fields of a wrong type dropped."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from syncworker.errors import StoreError
from syncworker.oci import Descriptor, Digest, Platform
from syncworker.oci.mediatypes import OCI_MANIFEST
from syncworker.store import FsStore, IndexEntry
from syncworker.store.protocol import REF_NAME

RAW = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'


def stored(tmp_path: Path) -> tuple[FsStore, Digest]:
    store = FsStore(tmp_path)
    digest = Digest.of(RAW)
    store.put_manifest("r", digest, RAW)
    return store, digest


def written(tmp_path: Path) -> list[dict[str, Any]]:
    manifests: list[dict[str, Any]] = json.loads((tmp_path / "r/index.json").read_bytes())[
        "manifests"
    ]
    return manifests


def test_hostile_optional_fields_are_dropped_and_size_is_the_stored_one(tmp_path: Path) -> None:
    store, digest = stored(tmp_path)
    hostile = Descriptor(
        OCI_MANIFEST,
        digest,
        len(RAW) + 1000,  # what an upstream declared, not what is stored
        platform=Platform("linux", "amd64", 8),  # type: ignore[arg-type]
        annotations={"org.example.ok": "yes", "org.example.n": 1, 2: "x"},  # type: ignore[dict-item]
        artifact_type=7,  # type: ignore[arg-type]
        urls=("https://example.com/x", 3),  # type: ignore[arg-type]
    )
    assert store.update_index("r", [IndexEntry(hostile, "v1")])
    assert written(tmp_path) == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": str(digest),
            "size": len(RAW),
            "platform": {"os": "linux", "architecture": "amd64"},
            "annotations": {"org.example.ok": "yes", REF_NAME: "v1"},
            "urls": ["https://example.com/x"],
        }
    ]
    # Written clean, read back equal: the same update again changes nothing.
    assert not store.update_index("r", [IndexEntry(hostile, "v1")])


@pytest.mark.parametrize(
    "media_type", ["", "not a media type", "text/plain\nX-Injected: 1", 42, None]
)
def test_a_bad_media_type_is_refused(tmp_path: Path, media_type: Any) -> None:
    store, digest = stored(tmp_path)
    bad = Descriptor(media_type, digest, len(RAW))
    with pytest.raises(StoreError, match="mediaType"):
        store.update_index("r", [IndexEntry(bad, "v1")])
    assert not (tmp_path / "r/index.json").exists()


@pytest.mark.parametrize("size", [-1, True, "10", 1.5])
def test_a_bad_size_of_an_unstored_manifest_is_refused(tmp_path: Path, size: Any) -> None:
    store = FsStore(tmp_path)
    bad = Descriptor(OCI_MANIFEST, Digest.of(b"absent"), size)
    with pytest.raises(StoreError, match="size"):
        store.update_index("r", [IndexEntry(bad, "v1")])


@pytest.mark.parametrize("name", ["index.json", ".claim"])
def test_a_file_nested_too_deep_to_parse_is_a_store_error_naming_it(
    tmp_path: Path, name: str
) -> None:
    """Another tool's file (or a damaged one) nested past Python's recursion limit: its
    repository fails with a StoreError naming the file, as any unreadable file does, not
    a RecursionError that ends a whole gc or check with a traceback."""
    store, _ = stored(tmp_path)
    (tmp_path / "r" / name).write_bytes(b"[" * 100_000)
    with pytest.raises(StoreError, match=rf"\br(: |/){re.escape(name)}"):
        store.index("r") if name == "index.json" else store.claimant("r")
