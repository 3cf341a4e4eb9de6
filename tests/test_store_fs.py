"""What only the filesystem store has to prove; the shared contract is test_store_contract.py."""

from __future__ import annotations

import errno
import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from syncworker.errors import StoreError
from syncworker.oci import Descriptor, Digest
from syncworker.oci.mediatypes import OCI_MANIFEST
from syncworker.store import FsStore, IndexEntry
from syncworker.store.fs import LEFTOVER_GRACE_SECONDS
from syncworker.store.layoutbackend import Listing


def put(store: FsStore, repo: str, data: bytes) -> Digest:
    digest = Digest.of(data)
    store.put_blob(repo, digest, len(data), [data])
    return digest


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root").mkdir()
    store = FsStore(tmp_path / "root")
    (tmp_path / "root" / "sneaky").symlink_to(outside)
    with pytest.raises(StoreError, match="outside the store root"):
        put(store, "sneaky/repo", b"x")
    assert list(outside.iterdir()) == []


def test_layout_files_are_plain_oci(tmp_path: Path) -> None:
    store = FsStore(tmp_path)
    digest = put(store, "a/b", b"manifest")
    store.update_index("a/b", [IndexEntry(Descriptor(OCI_MANIFEST, digest, 8), "v1")])
    assert json.loads((tmp_path / "a/b/oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((tmp_path / "a/b/index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "v1"}
    assert (tmp_path / f"a/b/blobs/sha256/{digest.hex}").read_bytes() == b"manifest"


def test_clean_leftovers_keeps_fresh_temporaries(tmp_path: Path) -> None:
    store = FsStore(tmp_path)
    (tmp_path / ".tmp").mkdir()
    old, fresh = tmp_path / ".tmp" / "blob-old", tmp_path / ".tmp" / "blob-fresh"
    old.write_bytes(b"crashed writer")
    fresh.write_bytes(b"live writer")
    long_ago = time.time() - LEFTOVER_GRACE_SECONDS - 60
    os.utime(old, (long_ago, long_ago))
    assert store.clean_leftovers() == 1
    assert not old.exists() and fresh.exists()


def test_a_stale_hint_is_a_miss_and_the_next_holder_replaces_it(tmp_path: Path) -> None:
    """A hint naming a repository that no longer has the blob is a miss (a download),
    not a scan; the repository storing it next becomes the hint."""
    store = FsStore(tmp_path)
    digest = put(store, "first", b"shared")
    store.link_blob("first", "second", digest)
    (tmp_path / f"first/blobs/sha256/{digest.hex}").unlink()  # e.g. garbage-collected
    fresh = FsStore(tmp_path)
    assert fresh.find_blob(digest) is None
    put(fresh, "third", b"shared")
    assert FsStore(tmp_path).find_blob(digest) == "third"


def test_a_blob_another_tool_wrote_is_found_once_a_repository_of_ours_holds_it(
    tmp_path: Path,
) -> None:
    store = FsStore(tmp_path)
    data = b"copied in by skopeo"
    digest = Digest.of(data)
    (tmp_path / "foreign/blobs/sha256").mkdir(parents=True)
    (tmp_path / "foreign/oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (tmp_path / f"foreign/blobs/sha256/{digest.hex}").write_bytes(data)
    assert store.find_blob(digest) is None  # no hint: one download, as if new
    put(store, "ours", data)
    assert FsStore(tmp_path).find_blob(digest) == "ours"


def test_link_falls_back_to_a_copy_across_filesystems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FsStore(tmp_path)
    digest = put(store, "src", b"on another device")

    def no_cross_device_links(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_cross_device_links)
    store.link_blob("src", "dst", digest)
    assert store.read_blob("dst", digest) == b"on another device"
    assert os.listdir(tmp_path / ".tmp") == []


def test_malformed_index_names_the_repository(tmp_path: Path) -> None:
    store = FsStore(tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken/index.json").write_text("{not json")
    with pytest.raises(StoreError, match="broken"):
        store.index("broken")


def test_unwritable_root_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="file"):
        FsStore(blocker / "root")


def test_misses_list_nothing_and_hold_nothing_however_many_blobs(tmp_path: Path) -> None:
    """A miss is one read of the digest's hint: the store is never listed, and what a
    store object keeps does not grow with the blobs the store holds (thousands here,
    without hints, as another tool leaves them)."""
    blobs = tmp_path / "foreign/blobs/sha256"
    blobs.mkdir(parents=True)
    (tmp_path / "foreign/oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    for i in range(5000):
        (blobs / Digest.of(f"foreign {i}".encode()).hex).write_bytes(b"x")
    store = FsStore(tmp_path)
    listed: list[str] = []
    real_list = store.backend.list

    def counting_list(prefix: str) -> Listing:
        listed.append(prefix)
        return real_list(prefix)

    store.backend.list = counting_list  # type: ignore[method-assign]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            assert store.find_blob(Digest.of(f"absent {i}".encode())) is None
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 64 * 1024, held  # a map of the 5000 blobs held 700 KB
    assert listed == []
    digest = put(store, "four", b"written here")
    assert FsStore(tmp_path).find_blob(digest) == "four"


@pytest.mark.parametrize("write", ["put", "put_if_absent", "write", "copy"])
def test_a_commit_failing_past_the_pending_limit_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    """Past MAX_PENDING paths waiting, a write commits them at once; a disk failing that
    commit (syncfs or fsync: EIO) is a StoreError naming the path, on every write path,
    never a raw OSError."""
    store = FsStore(tmp_path)
    digest = put(store, "src", b"linked")

    def failing(*_: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("syncworker.store.fsfiles.MAX_PENDING", 0)
    monkeypatch.setattr(os, "fsync", failing)
    monkeypatch.setattr(store.backend._durable, "_syncfs", failing)  # type: ignore[attr-defined]
    writes = {
        "put": lambda: store.backend.put("r/put", b"x"),
        "put_if_absent": lambda: store.backend.put_if_absent("r/absent", b"x"),
        "write": lambda: put(store, "r", b"written"),
        "copy": lambda: store.link_blob("src", "dst", digest),
    }
    with pytest.raises(StoreError, match=f"{tmp_path}/.*Input/output error"):
        writes[write]()
