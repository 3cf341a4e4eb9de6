"""The Store contract, run against every backend (filesystem and S3 on a real moto_server).

Each backend is wrapped in a small ``Backend`` that can look underneath the store (inodes,
object ETags, temporaries, pending multipart uploads), so the tests check what is really
written rather than what the store says about itself. The layout it leaves is read back by
tools we did not write: skopeo and umoci.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncworker.config.storeopen import open_store
from syncworker.coord import Coordinator
from syncworker.errors import DigestMismatchError, SizeLimitError, StoreError
from syncworker.oci import Descriptor, Digest
from syncworker.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from syncworker.store import BlobHints, IndexEntry, Store
from syncworker.store.protocol import REF_NAME, ClaimRecords, Readable, Servable
from syncworker.store.registry import Destination, RegistryStore
from tests.support.process import kill_when_ready
from tests.support.registry_server import RegistryServer
from tests.support.s3_server import S3Server, s3_server, s3rver_server

__all__ = ["s3_server", "s3rver_server"]  # the session fixtures, imported for pytest

MIB = 1024 * 1024


class Backend:
    """A store plus the means to look underneath it."""

    store: Store
    root_directory: str
    driver: dict[str, Any] | None = None
    child_env: dict[str, str] = {}
    reports_upload_times = True
    keeps_failed_uploads = False
    aborts_uploads = True
    lists_uploads = True
    # fs: put_blob holds an flock on its temporary, so a dead writer's is known at once.
    detects_dead_writers = False

    def leftovers(self) -> list[str]:
        """Temporaries and unfinished uploads."""
        raise NotImplementedError

    def find_blob_anywhere(self, digest: Digest) -> list[str]:
        """Every final name (file, key) holding ``digest``, in any repository."""
        raise NotImplementedError

    def assert_shared(self, src: str, dst: str, digest: Digest) -> None:
        raise NotImplementedError

    def index_fingerprint(self, repo: str) -> object:
        """Changes whenever index.json is rewritten, even with the same bytes."""
        raise NotImplementedError

    def write_raw(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def read_raw(self, name: str) -> bytes:
        raise NotImplementedError

    def materialise(self, target: Path) -> Path:
        """A local directory with the store's layout, for skopeo and umoci."""
        raise NotImplementedError

    def reopen(self) -> Store:
        """Another store object on the same destination, as another process opens it."""
        return open_store(self.root_directory, self.driver)


class FsBackend(Backend):
    detects_dead_writers = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root_directory = str(root)
        self.store = open_store(str(root), None)

    def leftovers(self) -> list[str]:
        return sorted(os.listdir(self.root / ".tmp"))

    def find_blob_anywhere(self, digest: Digest) -> list[str]:
        return [str(p) for p in self.root.glob(f"**/blobs/{digest.algorithm}/{digest.hex}")]

    def assert_shared(self, src: str, dst: str, digest: Digest) -> None:
        rel = f"blobs/{digest.algorithm}/{digest.hex}"
        assert (self.root / src / rel).samefile(self.root / dst / rel), "not a hard link"

    def index_fingerprint(self, repo: str) -> object:
        stat = (self.root / repo / "index.json").stat()
        return stat.st_ino, stat.st_mtime_ns

    def write_raw(self, name: str, data: bytes) -> None:
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        (self.root / name).write_bytes(data)

    def read_raw(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def materialise(self, target: Path) -> Path:
        return self.root


class S3Backend(Backend):
    """A fresh bucket on the session's moto_server; every S3 call the store makes is logged."""

    # moto answers ListMultipartUploads with a fixed Initiated of 2010-11-10 (a template in
    # moto/s3/responses.py), so every upload looks old enough to clean up.
    reports_upload_times = False

    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.bucket = server.new_bucket()
        self.s3 = server.client()
        self.root_directory = "/mirror"
        self.prefix = "mirror/"
        self.driver = server.driver(self.bucket, self.root_directory)
        self.store = open_store(self.root_directory, self.driver)
        self.calls: list[tuple[str, str | None]] = []
        self.store.client.meta.events.register(  # type: ignore[attr-defined]
            "before-parameter-build.s3", self._log
        )

    def _log(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, params.get("Key")))

    def keys(self) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def leftovers(self) -> list[str]:
        uploads = self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return sorted(u["Key"] for u in uploads)

    def find_blob_anywhere(self, digest: Digest) -> list[str]:
        return [k for k in self.keys() if k.endswith(f"/blobs/{digest.algorithm}/{digest.hex}")]

    def assert_shared(self, src: str, dst: str, digest: Digest) -> None:
        key = f"{self.prefix}{dst}/blobs/{digest.algorithm}/{digest.hex}"
        made = {op for op, k in self.calls if k == key}
        assert "CopyObject" in made, self.calls
        assert not made & {"PutObject", "CreateMultipartUpload", "UploadPart"}, made

    def index_fingerprint(self, repo: str) -> object:
        key = f"{self.prefix}{repo}/index.json"
        head = self.s3.head_object(Bucket=self.bucket, Key=key)
        writes = sum(1 for op, k in self.calls if k == key and op == "PutObject")
        return head["ETag"], head["LastModified"], writes

    def write_raw(self, name: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self.prefix + name, Body=data)

    def read_raw(self, name: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"].read()
        return body

    def materialise(self, target: Path) -> Path:
        for key in self.keys():
            if key.startswith(self.prefix):
                path = target / key[len(self.prefix) :]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        return target


class S3rverBackend(S3Backend):
    """The same on s3rver, an S3 server without ListMultipartUploads or
    AbortMultipartUpload: the store cannot see or remove an unfinished upload there, so
    the test looks into s3rver's data directory, and a failed upload's parts stay."""

    aborts_uploads = False
    lists_uploads = False

    def leftovers(self) -> list[str]:
        assert self.server.data is not None
        uploads = self.server.data / self.bucket / "._S3rver_uploads"
        return sorted(p.joinpath("key").read_text() for p in uploads.glob("*"))


class RegistryBackend(Backend):
    """A fresh distribution registry as the destination; underneath are its storage
    directory (upload sessions, blob links) and its request counters."""

    # A cut upload leaves its session in the registry, which expires it (distribution:
    # storage.maintenance.uploadpurging); no client can cancel it, so none is counted.
    keeps_failed_uploads = True

    def __init__(self, server: RegistryServer, coord: Coordinator) -> None:
        self.server = server
        self.hints: BlobHints = coord
        self.claims: ClaimRecords = coord
        self.root_directory = server.url
        self.store = self.reopen()
        self.repos = server.storage_dir / "docker/registry/v2/repositories"

    def reopen(self) -> Store:
        return RegistryStore(Destination(self.server.url), self.hints, self.claims)

    def leftovers(self) -> list[str]:
        return sorted(str(p) for p in self.repos.glob("**/_uploads/*"))

    def find_blob_anywhere(self, digest: Digest) -> list[str]:
        link = f"_layers/{digest.algorithm}/{digest.hex}/link"
        return sorted(str(p) for p in self.repos.glob(f"**/{link}"))

    def assert_shared(self, src: str, dst: str, digest: Digest) -> None:
        # Mounted: one upload in all (src's), one mount, the blob's data stored once.
        assert self.server.request_count("blob_upload_chunk", "put") == 1
        assert self.server.request_count("blob_upload", "post", "201") >= 1
        data = self.server.storage_dir / "docker/registry/v2/blobs"
        assert len(list(data.glob(f"{digest.algorithm}/*/{digest.hex}/data"))) == 1


def _fs_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return FsBackend(tmp_path / "store")


def _s3_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    backend = S3Backend(request.getfixturevalue("s3_server"))
    request.addfinalizer(lambda: backend.server.drop(backend.bucket))
    return backend


def _s3rver_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    backend = S3rverBackend(request.getfixturevalue("s3rver_server"))
    request.addfinalizer(lambda: backend.server.drop(backend.bucket))
    return backend


def _registry_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    server = request.getfixturevalue("make_registry")()
    # Blob hints and claims shared the way workers share them: through Redis, nothing in
    # memory.
    coord = Coordinator.from_url(
        request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    )
    request.addfinalizer(coord.close)
    return RegistryBackend(server, coord)


LAYOUTS = ["fs", "s3", "s3rver"]
BACKENDS = {
    "fs": _fs_backend,
    "s3": _s3_backend,
    "s3rver": _s3rver_backend,
    "registry": _registry_backend,
}
# index.json's own rules (annotations, untagged entries of any manifest, other tools'
# fields, made-up manifests) and the files of a layout: the layout stores only. What a
# registry destination does instead is in tests/test_dest_store.py.
layouts_only = pytest.mark.parametrize("backend", LAYOUTS, indirect=True)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store


def blob(text: bytes) -> tuple[Digest, bytes]:
    return Digest.of(text), text


def manifest_entry(raw: bytes, tag: str | None = None, **annotations: str) -> IndexEntry:
    return IndexEntry(
        Descriptor(OCI_MANIFEST, Digest.of(raw), len(raw), annotations=annotations), tag
    )


# -- blobs --------------------------------------------------------------------------------


def assert_no_leftovers(backend: Backend, digest: Digest) -> None:
    """Nothing of a failed write remains, except on a registry its one upload session,
    which the registry expires (tests/test_dest_store.py: it hinders no later write)."""
    if not backend.aborts_uploads:
        assert len(backend.leftovers()) <= 1
    elif backend.keeps_failed_uploads:
        assert len(backend.leftovers()) == 1
    else:
        assert backend.leftovers() == []


def test_put_has_read_blob(store: Store) -> None:
    digest, data = blob(os.urandom(3 * MIB + 17))
    parts = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    assert store.put_blob("team/app", digest, len(data), parts) == len(data)
    assert store.has_blob("team/app", digest)
    assert not store.has_blob("team/other", digest)
    assert store.read_blob("team/app", digest) == data
    with pytest.raises(StoreError, match="team/other"):
        store.read_blob("team/other", digest)


def test_a_blob_read_back_streamed_for_a_check(store: Store) -> None:
    """What ``syncworker check`` reads: the stored size, and the bytes in chunks."""
    assert isinstance(store, Readable)
    digest, data = blob(os.urandom(2 * MIB + 5))
    store.put_blob("team/app", digest, len(data), [data])
    assert store.blob_size("team/app", digest) == len(data)
    assert store.blob_size("team/other", digest) is None
    with store.open_blob("team/app", digest) as chunks:
        assert b"".join(chunks) == data
    with pytest.raises(StoreError, match="team/other"), store.open_blob("team/other", digest):
        pass


@layouts_only
def test_a_blob_served_in_parts_from_a_file_or_a_url(backend: Backend) -> None:
    """What ``syncworker serve`` reads: ranges of a blob, and its local file (sendfile) or a
    presigned URL a client fetches it from without our credentials."""
    store = backend.store
    assert isinstance(store, Servable)
    digest, data = blob(os.urandom(MIB + 3))
    store.put_blob("team/app", digest, len(data), [data])
    for start, length in [(0, None), (5, 10), (MIB - 2, 5), (len(data) - 1, 1), (7, None)]:
        with store.open_blob_range("team/app", digest, start, length) as chunks:
            end = None if length is None else start + length
            assert b"".join(chunks) == data[start:end]
    path, url = store.blob_file("team/app", digest), store.blob_url("team/app", digest, 60)
    assert (path is None) != (url is None)
    if path is not None:
        assert Path(path).read_bytes() == data
    else:
        assert url is not None
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert answer.read() == data
    with (
        pytest.raises(StoreError, match="team/other"),
        store.open_blob_range("team/other", digest, 0, 1) as chunks,
    ):
        b"".join(chunks)


def test_put_blob_without_declared_size(store: Store) -> None:
    digest, data = blob(b"no size given")
    assert store.put_blob("r", digest, None, iter([data])) == len(data)
    assert store.read_blob("r", digest) == data


def test_put_blob_twice_is_harmless(store: Store) -> None:
    digest, data = blob(b"same bytes twice")
    store.put_blob("r", digest, len(data), [data])
    store.put_blob("r", digest, len(data), [data])
    assert store.read_blob("r", digest) == data


def test_digest_mismatch_leaves_nothing(backend: Backend) -> None:
    digest = Digest.of(b"what was promised")
    with pytest.raises(DigestMismatchError):
        backend.store.put_blob("r", digest, None, [b"what ", b"was sent"])
    assert not backend.store.has_blob("r", digest)
    assert backend.find_blob_anywhere(digest) == []
    assert_no_leftovers(backend, digest)


@pytest.mark.parametrize("declared", [5, 100])
def test_size_mismatch_leaves_nothing(backend: Backend, declared: int) -> None:
    digest, data = blob(b"twelve bytes")
    with pytest.raises(SizeLimitError):
        backend.store.put_blob("r", digest, declared, [data])
    assert not backend.store.has_blob("r", digest)
    assert backend.find_blob_anywhere(digest) == []
    assert_no_leftovers(backend, digest)


def test_source_failing_half_way_leaves_nothing(backend: Backend) -> None:
    digest = Digest.of(b"x" * 40 * MIB)

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * MIB
        raise ConnectionResetError("upstream went away")

    with pytest.raises(ConnectionResetError):  # the source's error, not a StoreError
        backend.store.put_blob("r", digest, 40 * MIB, chunks())
    assert not backend.store.has_blob("r", digest)
    assert backend.find_blob_anywhere(digest) == []
    assert_no_leftovers(backend, digest)


@layouts_only
def test_killed_writer_leaves_only_removable_leftovers(backend: Backend) -> None:
    """SIGKILL a process in the middle of put_blob: nothing reachable, clean-up removes it."""
    size = 64 * MIB
    digest = Digest.of(b"k" * size)
    kill_when_ready(
        [sys.executable, "-c", _KILLED_WRITER, backend.root_directory, json.dumps(backend.driver)],
        env={**os.environ, **backend.child_env},
    )
    assert not backend.store.has_blob("victim", digest)
    assert backend.find_blob_anywhere(digest) == []
    assert backend.leftovers(), "the killed writer should have left a temporary behind"
    if not backend.lists_uploads:  # the store cannot see it: it stays, and nothing fails
        assert backend.store.clean_leftovers(max_age=0) == 0  # type: ignore[call-arg]
        return
    if backend.detects_dead_writers:
        assert backend.store.clean_leftovers() >= 1, "a dead writer's temporary goes at once"
    else:
        if backend.reports_upload_times:
            assert backend.store.clean_leftovers() == 0, "a fresh one may be a live writer's"
        assert backend.store.clean_leftovers(max_age=0) >= 1  # type: ignore[call-arg]
    assert backend.leftovers() == []


# A child that streams 24 MiB of a 64 MiB blob (several S3 parts, many fs buffers), says
# "ready", and waits to be killed.
_KILLED_WRITER = """
import json, sys, time
from syncworker.oci import Digest
from syncworker.config.storeopen import open_store
store = open_store(sys.argv[1], json.loads(sys.argv[2]))
size = 64 * 1024 * 1024
def chunks():
    for i in range(24):
        yield b"k" * (1024 * 1024)
    print("ready", flush=True)
    time.sleep(600)
store.put_blob("victim", Digest.of(b"k" * size), size, chunks())
"""


@layouts_only
def test_put_manifest_preserves_bytes(store: Store) -> None:
    raw = (
        b'{ "schemaVersion" : 2,\n\t"mediaType":"' + OCI_MANIFEST.encode() + b'", "layers": [] }\n'
    )
    digest = Digest.of(raw)
    store.put_manifest("r", digest, raw)
    assert store.read_blob("r", digest) == raw


def test_put_manifest_refuses_wrong_digest(backend: Backend) -> None:
    raw = b'{"schemaVersion":2}'
    wrong = Digest.of(b"something else")
    with pytest.raises(DigestMismatchError):
        backend.store.put_manifest("r", wrong, raw)
    assert backend.find_blob_anywhere(wrong) == []


# -- dedupe -----------------------------------------------------------------------------


def test_link_blob_dedupes(backend: Backend) -> None:
    store = backend.store
    digest, data = blob(os.urandom(MIB))
    store.put_blob("src/repo", digest, len(data), [data])
    assert store.find_blob(digest) == "src/repo"
    store.link_blob("src/repo", "dst", digest)
    assert store.has_blob("dst", digest)
    assert store.read_blob("dst", digest) == data
    backend.assert_shared("src/repo", "dst", digest)
    store.link_blob("src/repo", "dst", digest)  # again: no error, nothing changes
    assert store.find_blob(digest) in ("src/repo", "dst")


def test_link_blob_from_a_repo_lacking_it(store: Store) -> None:
    digest, data = blob(b"held by nobody")
    with pytest.raises(StoreError, match="nowhere"):
        store.link_blob("nowhere", "dst", digest)
    assert not store.has_blob("dst", digest)


def test_find_blob_misses(store: Store) -> None:
    digest, data = blob(b"present")
    store.put_blob("a", digest, len(data), [data])
    assert store.find_blob(Digest.of(b"absent")) is None


def test_find_blob_sees_other_processes_writes(backend: Backend) -> None:
    digest, data = blob(b"written by another store instance")
    assert backend.store.find_blob(digest) is None
    other = backend.reopen()
    other.put_blob("elsewhere", digest, len(data), [data])
    assert backend.store.find_blob(digest) == "elsewhere"


@layouts_only
def test_a_hint_gc_made_stale_is_replaced_by_the_next_holder(backend: Backend) -> None:
    """gc removed the blob from the repository its hint names: the next repository to
    store the digest becomes its hint, so later copies link it instead of fetching it."""
    store = backend.store
    digest, data = blob(b"a layer gc took from its first holder")
    store.put_blob("first", digest, len(data), [data])
    store.delete_blob("first", digest)  # what gc does, holding the repository
    assert store.find_blob(digest) is None
    store.put_blob("second", digest, len(data), [data])
    assert backend.read_raw(f".digests/{digest.algorithm}/{digest.hex}") == b"second"
    assert backend.reopen().find_blob(digest) == "second"


# -- index.json -------------------------------------------------------------------------


def test_index_of_a_new_repository_is_empty(store: Store) -> None:
    assert store.index("fresh") == []


@layouts_only
def test_update_index_merge_rules(store: Store) -> None:
    one, two, three = b'{"m":1}', b'{"m":2}', b'{"m":3}'
    assert store.update_index("r", [manifest_entry(one, "v1"), manifest_entry(two, "v2")])
    # A tag moves to another digest, in place.
    assert store.update_index("r", [manifest_entry(three, "v1")])
    assert [(e.tag, e.descriptor.digest) for e in store.index("r")] == [
        ("v1", Digest.of(three)),
        ("v2", Digest.of(two)),
    ]
    # Untagged: added once, beside any tag of the digest, which comes and goes alone.
    assert store.update_index("r", [manifest_entry(one)])
    assert not store.update_index("r", [manifest_entry(one)])
    assert store.update_index("r", [manifest_entry(two)])
    assert store.update_index("r", [manifest_entry(one, "v3")])
    assert [(e.tag, e.descriptor.digest) for e in store.index("r")] == [
        ("v1", Digest.of(three)),
        ("v2", Digest.of(two)),
        (None, Digest.of(one)),
        (None, Digest.of(two)),
        ("v3", Digest.of(one)),
    ]
    assert store.remove_from_index("r", ["v2", "v3"], [])
    assert [(e.tag, e.descriptor.digest) for e in store.index("r")] == [
        ("v1", Digest.of(three)),
        (None, Digest.of(one)),
        (None, Digest.of(two)),
    ]
    assert store.update_index("r", [manifest_entry(one, "v3")])
    # The same digest under two tags is two entries.
    assert store.update_index("r", [manifest_entry(one, "latest")])
    assert {e.tag for e in store.index("r") if e.descriptor.digest == Digest.of(one)} == {
        None,
        "v3",
        "latest",
    }


@layouts_only
def test_index_entries_round_trip(store: Store) -> None:
    entry = manifest_entry(b'{"m":1}', "v1", **{"org.example.note": "kept"})
    store.update_index("r", [entry])
    assert store.index("r") == [entry]


@layouts_only
def test_noop_update_writes_nothing(backend: Backend) -> None:
    store = backend.store
    entries = [manifest_entry(b'{"m":1}', "v1"), manifest_entry(b'{"m":2}')]
    assert store.update_index("r", entries)
    before = backend.index_fingerprint("r")
    assert not store.update_index("r", entries)
    assert not store.update_index("r", [])
    assert backend.index_fingerprint("r") == before


@layouts_only
def test_update_keeps_fields_written_by_other_tools(backend: Backend) -> None:
    child = {
        "mediaType": OCI_MANIFEST,
        "digest": str(Digest.of(b'{"m":1}')),
        "size": 7,
        "platform": {"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.1"},
        "annotations": {REF_NAME: "win"},
    }
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [child],
        "annotations": {"org.example.owner": "someone"},
    }
    backend.write_raw("r/index.json", json.dumps(doc).encode())
    backend.write_raw("r/oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
    [entry] = backend.store.index("r")
    assert entry.tag == "win"
    assert not backend.store.update_index("r", [entry])  # equal as far as we model it
    assert backend.store.update_index("r", [manifest_entry(b'{"m":2}', "v2")])
    written = json.loads(backend.read_raw("r/index.json"))
    assert written["manifests"][0] == child
    assert written["annotations"] == {"org.example.owner": "someone"}


@layouts_only
def test_concurrent_updates_lose_nothing(store: Store) -> None:
    """8 threads each add tags; a lost read-modify-write would drop some of them."""
    threads_n, tags_n = 8, 12
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(tags_n):
                store.update_index(
                    "busy", [manifest_entry(f'{{"t":{t},"i":{i}}}'.encode(), f"t{t}-{i}")]
                )
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    tags = {e.tag for e in store.index("busy")}
    assert tags == {f"t{t}-{i}" for t in range(threads_n) for i in range(tags_n)}


@layouts_only
def test_repositories_lists_nested_names(store: Store) -> None:
    for repo in ["b", "a/b/c", "a/b", "a"]:
        store.update_index(repo, [manifest_entry(b'{"m":1}', "v1")])
    digest, data = blob(b"blob only, no index yet")
    store.put_blob("blob-only", digest, len(data), [data])
    assert store.repositories() == ["a", "a/b", "a/b/c", "b"]


@pytest.mark.parametrize("name", ["../escape", "/abs", "a/../../escape", ".tmp", "a//b", ""])
def test_path_escape_refused(store: Store, name: str) -> None:
    digest, data = blob(b"x")
    with pytest.raises(StoreError):
        store.put_blob(name, digest, 1, [data])
    with pytest.raises(StoreError):
        store.update_index(name, [manifest_entry(b"{}", "v1")])


# -- read by tools we did not write -------------------------------------------------------


def tiny_image() -> dict[str, Any]:
    """A real single-layer image: a gzip tar with one file, its config and manifest."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        content = b"hello from the store contract test\n"
        info = tarfile.TarInfo("etc/greeting")
        info.size, info.mode, info.mtime = len(content), 0o644, 0
        tar.addfile(info, io.BytesIO(content))
    layer_tar = buf.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()],
            },
        }
    ).encode()

    def desc(media_type: str, data: bytes) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": desc("application/vnd.oci.image.config.v1+json", config),
            "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
        },
        indent=2,
    ).encode()
    return {"config": config, "layer": layer, "manifest": manifest}


@layouts_only
def test_skopeo_and_umoci_read_the_layout(backend: Backend, tmp_path: Path) -> None:
    store, image = backend.store, tiny_image()
    for part in ("config", "layer"):
        data = image[part]
        store.put_blob("tools/tiny", Digest.of(data), len(data), [data])
    store.put_manifest("tools/tiny", Digest.of(image["manifest"]), image["manifest"])
    store.update_index("tools/tiny", [manifest_entry(image["manifest"], "1.0")])
    root = backend.materialise(tmp_path / "copy")
    layout = f"{root}/tools/tiny"
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci:{layout}:1.0"], capture_output=True, text=True, check=False
    )
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["Digest"] == str(Digest.of(image["manifest"]))
    bundle = tmp_path / "bundle"
    unpack = subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:1.0", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert unpack.returncode == 0, unpack.stderr
    assert (bundle / "rootfs/etc/greeting").read_bytes() == b"hello from the store contract test\n"
