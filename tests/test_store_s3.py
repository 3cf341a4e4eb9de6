"""What only the S3 store has to prove, against real S3 servers on loopback: moto_server,
and s3rver where the test does not need what s3rver leaves out (listing or aborting
multipart uploads, conditional writes: syncworker/store/s3optional.py).

The backend-neutral behaviour is in test_store_contract.py, which runs on both too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from syncworker.config.storage import S3DriverConfig, StorageConfig
from syncworker.config.storeopen import open_store
from syncworker.errors import ConfigError, DigestMismatchError, StoreError
from syncworker.oci import Descriptor, Digest
from syncworker.oci.mediatypes import OCI_MANIFEST
from syncworker.retry import classify
from syncworker.store import IndexEntry
from syncworker.store.s3 import S3Store
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.ports import free_port
from tests.support.s3_server import S3Server, any_s3, s3_server, s3rver_server

__all__ = ["any_s3", "s3_server", "s3rver_server"]  # the fixtures, imported for pytest

MIB = 1024 * 1024
WRITES = frozenset(
    {"PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy"}
    | {"CompleteMultipartUpload", "DeleteObject", "DeleteObjects"}
)
# Peak RSS of a process holding Python, boto3 and two 16 MiB parts, with a wide margin.
# Buffering a 200 MiB blob whole would pass 200 MiB on its own.
PEAK_RSS_LIMIT_MIB = 150


class Logged:
    """An S3Store on a fresh bucket whose every S3 call is recorded as (operation, key)."""

    def __init__(self, server: S3Server, **driver: Any) -> None:
        self.server = server
        self.bucket = server.new_bucket()
        self.driver = {**server.driver(self.bucket), **driver}
        self.store = open_store("/mirror", self.driver)
        assert isinstance(self.store, S3Store)
        self.calls: list[tuple[str, str | None]] = []
        self.store.client.meta.events.register("before-parameter-build.s3", self._log)

    def _log(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, params.get("Key")))

    def ops(self, key: str | None = None) -> list[str]:
        return [op for op, k in self.calls if key is None or k == key]

    def pending_uploads(self) -> list[Any]:
        answer = self.server.client().list_multipart_uploads(Bucket=self.bucket)
        return list(answer.get("Uploads", []))


@pytest.fixture
def logged(any_s3: S3Server) -> Iterator[Logged]:
    store = Logged(any_s3)
    yield store
    any_s3.drop(store.bucket)


@pytest.fixture
def moto_logged(s3_server: S3Server) -> Iterator[Logged]:
    """On moto alone: the test lists pending multipart uploads, which s3rver cannot."""
    store = Logged(s3_server)
    yield store
    s3_server.drop(store.bucket)


def entry(raw: bytes, tag: str | None) -> IndexEntry:
    return IndexEntry(Descriptor(OCI_MANIFEST, Digest.of(raw), len(raw)), tag)


# -- large blobs ----------------------------------------------------------------------------


def test_200_mib_blob_streams_with_bounded_memory(moto_logged: Logged) -> None:
    logged = moto_logged
    """A child process streams 200 MiB into S3; its peak RSS shows nothing was held whole."""
    child = subprocess.run(
        [sys.executable, "-c", _BIG_WRITER, json.dumps(logged.driver)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    figures = json.loads(child.stdout)
    print(f"\n200 MiB put_blob into S3 (moto_server): {json.dumps(figures)}")
    assert figures["bytes"] == 200 * MIB
    assert figures["peak_rss_mib"] < PEAK_RSS_LIMIT_MIB, figures
    # Two 16 MiB part buffers by design; four parts' worth would mean copies crept in.
    assert figures["peak_rss_mib"] - figures["rss_before_put_mib"] < 4 * 16, figures
    digest = Digest.parse(figures["digest"])
    assert logged.store.has_blob("big", digest)
    head = logged.server.client().head_object(
        Bucket=logged.bucket, Key=f"mirror/big/blobs/sha256/{digest.hex}"
    )
    assert head["ContentLength"] == 200 * MIB
    assert logged.pending_uploads() == []
    assert logged.store.find_blob(digest) == "big"


# Generates 200 MiB on the fly (never held whole), hashes it in a first pass, then puts it.
_BIG_WRITER = """
import hashlib, json, random, resource, sys, threading, time
from syncworker.oci import Digest
from syncworker.config.storeopen import open_store

MIB, TOTAL, CHUNK = 1 << 20, 200 << 20, 256 << 10
block = random.Random(0).randbytes(CHUNK)
def chunks():
    for i in range(TOTAL // CHUNK):
        yield i.to_bytes(8, "big") + block[8:]
def rss_now():  # resident set size now, in MiB
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / MIB
def rss_peak():
    # VmHWM: the peak of this process image. Not getrusage's ru_maxrss: Linux carries that
    # over exec from the forking parent, so it reports pytest's own size, not ours.
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
h = hashlib.sha256()
for c in chunks():
    h.update(c)
digest = Digest("sha256", h.hexdigest())
store = open_store("/mirror", json.loads(sys.argv[1]))
peak_before = rss_peak()
before = rss_now()
during = [before]
done = threading.Event()
def sample():
    while not done.wait(0.02):
        during.append(rss_now())
sampler = threading.Thread(target=sample)
sampler.start()
start = time.perf_counter()
written = store.put_blob("big", digest, TOTAL, chunks())
seconds = time.perf_counter() - start
done.set()
sampler.join()
print(json.dumps({
    "bytes": written, "digest": str(digest), "seconds": round(seconds, 2),
    "mib_per_s": round(TOTAL / MIB / seconds, 1),
    "rss_before_put_mib": round(before, 1),
    "peak_rss_before_put_mib": round(peak_before, 1),
    "max_rss_during_put_mib": round(max(during), 1),
    "peak_rss_mib": round(rss_peak(), 1),
}))
"""


@pytest.mark.parametrize("size", [5 * MIB, 5 * MIB + 1, 12 * MIB + 3])
@pytest.mark.parametrize("declared", [True, False])
def test_multipart_boundaries(any_s3: S3Server, size: int, declared: bool) -> None:
    """Parts of 5 MiB (the smallest S3 allows): exact multiples, one byte over, a tail."""
    logged = Logged(any_s3, chunksize=5 * MIB)
    try:
        data = hashlib.sha256(b"seed").digest() * (size // 32 + 1)
        data = data[:size]
        digest = Digest.of(data)
        chunks = [data[i : i + 700_000] for i in range(0, size, 700_000)]
        logged.store.put_blob("r", digest, size if declared else None, chunks)
        assert logged.store.read_blob("r", digest) == data
        key = f"mirror/r/blobs/sha256/{digest.hex}"
        assert ("CompleteMultipartUpload" in logged.ops(key)) == (size > 5 * MIB)
    finally:
        any_s3.drop(logged.bucket)


def test_interrupted_upload_is_aborted(moto_logged: Logged) -> None:
    logged = moto_logged
    digest = Digest.of(b"never")

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"p" * MIB
        raise TimeoutError("upstream stalled")

    with pytest.raises(TimeoutError):
        logged.store.put_blob("r", digest, None, chunks())
    key = f"mirror/r/blobs/sha256/{digest.hex}"
    assert logged.ops(key).count("UploadPart") >= 2, "parts should have been sent"
    assert "AbortMultipartUpload" in logged.ops(key)
    assert "CompleteMultipartUpload" not in logged.ops(key)
    assert logged.pending_uploads() == []
    assert not logged.store.has_blob("r", digest)


def test_wrong_digest_after_parts_completes_nothing(moto_logged: Logged) -> None:
    logged = moto_logged
    data = b"q" * (20 * MIB)
    wrong = Digest.of(b"not this")
    with pytest.raises(DigestMismatchError):
        logged.store.put_blob(
            "r", wrong, None, [data[i : i + MIB] for i in range(0, len(data), MIB)]
        )
    assert "CompleteMultipartUpload" not in logged.ops()
    assert logged.pending_uploads() == []


# -- dedupe by server-side copy ----------------------------------------------------------------


def test_cross_repo_dedupe_is_a_server_side_copy(logged: Logged) -> None:
    data = b"c" * (20 * MIB)
    digest = Digest.of(data)
    logged.store.put_blob("one", digest, len(data), [data])
    src = logged.store.find_blob(digest)
    assert src == "one"
    logged.calls.clear()
    logged.store.link_blob(src, "two", digest)
    key = f"mirror/two/blobs/sha256/{digest.hex}"
    assert "CopyObject" in logged.ops(key)
    # No byte of the blob went through us: no upload of any kind, no read of the source.
    assert not {"UploadPart", "CreateMultipartUpload", "GetObject"} & set(logged.ops())
    assert "PutObject" not in logged.ops(key)
    assert logged.store.read_blob("two", digest) == data


def test_copy_above_the_threshold_uses_upload_part_copy(
    any_s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    """What happens above 5 GiB, shown with a 5 MiB threshold. A server without
    UploadPartCopy (s3rver) gets one CopyObject per blob instead, and one warning."""
    logged = Logged(any_s3, multipartcopythresholdsize=5 * MIB, multipartcopychunksize=5 * MIB)
    try:
        for repo in ("two", "three"):
            data = b"u" * (12 * MIB)
            digest = Digest.of(data)
            logged.store.put_blob("one", digest, len(data), [data])
            logged.calls.clear()
            with caplog.at_level(logging.WARNING, logger="syncworker.store.s3optional"):
                logged.store.link_blob("one", repo, digest)
            key = f"mirror/{repo}/blobs/sha256/{digest.hex}"
            assert logged.store.read_blob(repo, digest) == data
        lacking = [r.getMessage() for r in caplog.records]
        if any_s3.kind == "moto":
            assert logged.ops(key).count("UploadPartCopy") == 3 and lacking == []
        else:  # the second link no longer tries parts
            assert "UploadPartCopy" not in logged.ops(key) and "CopyObject" in logged.ops(key)
            assert sum("does not implement UploadPartCopy" in m for m in lacking) == 1
    finally:
        any_s3.drop(logged.bucket)


# -- index.json ------------------------------------------------------------------------------


def test_noop_index_update_makes_no_write_at_all(logged: Logged) -> None:
    entries = [entry(b'{"a":1}', "v1"), entry(b'{"a":2}', None)]
    assert logged.store.update_index("r", entries)
    logged.calls.clear()
    assert not logged.store.update_index("r", entries)
    assert not set(logged.ops()) & WRITES, logged.calls


def test_a_write_between_read_and_write_is_not_lost(s3_server: S3Server) -> None:
    """Two stores (two machines) with no lock between them: store B updates index.json right
    after store A read it. A's conditional write (If-Match) fails, A re-reads and merges.

    The interleaving is forced with a hook rather than left to threads: moto checks the
    condition and stores the object in two steps, so a threaded race against moto can lose
    an update that S3 itself (atomic conditional writes) would refuse.
    """
    logged = Logged(s3_server)
    try:
        other = open_store("/mirror", logged.driver)
        logged.store.update_index("shared", [entry(b'"base"', "base")])
        interleaved: list[bool] = []

        def meddle(**_: Any) -> None:
            if not interleaved:
                interleaved.append(other.update_index("shared", [entry(b'"b"', "b")]))

        logged.store.client.meta.events.register("after-call.s3.GetObject", meddle)
        assert logged.store.update_index("shared", [entry(b'"a"', "a")])
        assert interleaved == [True]
        assert logged.ops("mirror/shared/index.json").count("PutObject") == 3  # base, lost, won
        assert [e.tag for e in other.index("shared")] == ["base", "b", "a"]
    finally:
        s3_server.drop(logged.bucket)


def test_a_server_ignoring_conditions_is_found_out_once(
    s3rver_server: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    """s3rver accepts If-None-Match on PutObject and ignores it: the store finds that out
    with one probe, says so once, and still never overwrites an index.json blindly: a write
    it cannot make conditional is read back until the server shows it."""
    logged = Logged(s3rver_server)
    try:
        with caplog.at_level(logging.WARNING, logger="syncworker.store.s3optional"):
            for i in range(3):
                assert logged.store.update_index("r", [entry(b'{"n":%d}' % i, f"v{i}")])
        lacking = [r.getMessage() for r in caplog.records]
        assert len(lacking) == 1 and "If-None-Match / If-Match on PutObject" in lacking[0]
        probes = [k for op, k in logged.calls if op == "PutObject" and "probe" in (k or "")]
        assert len(probes) == 2  # written twice, the second time with If-None-Match: once
        assert logged.ops("mirror/r/index.json").count("GetObject") >= 3 + 3  # read, read back
        assert {e.tag for e in logged.store.index("r")} == {"v0", "v1", "v2"}
        assert not [
            k
            for k in logged.server.client()
            .list_objects_v2(Bucket=logged.bucket)
            .get("Contents", [])
            if "probe" in k["Key"]
        ]
    finally:
        s3rver_server.drop(logged.bucket)


# -- bad settings ------------------------------------------------------------------------------


def test_missing_bucket_fails_fast_and_names_it(any_s3: S3Server) -> None:
    s3_server = any_s3
    driver = s3_server.driver("no-such-bucket-here")
    with pytest.raises(StoreError) as caught:
        open_store("/mirror", driver)
    text = str(caught.value)
    assert "no-such-bucket-here" in text and s3_server.endpoint in text
    assert "NoSuchBucket" in text
    assert driver["secretkey"] not in text


def test_closed_port_fails_fast_and_names_the_endpoint(s3_server: S3Server) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    driver = {**s3_server.driver("mirror"), "regionendpoint": endpoint}
    with pytest.raises(StoreError) as caught:
        open_store("/mirror", driver)
    assert endpoint in str(caught.value) and "mirror" in str(caught.value)
    assert classify(caught.value)


def test_a_body_cut_short_is_a_temporary_store_error_naming_the_key(
    s3_server: S3Server,
) -> None:
    """A GetObject whose connection closes before the declared Content-Length is read (a
    server writing the object beside the read, a dropped connection) is a StoreError the
    retry policy takes as temporary, not an unexpected error that fails the repository."""
    bucket = s3_server.new_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="mirror/a/oci-layout", Body=b"x" * 31)
    with FaultProxy(
        s3_server.endpoint, rate=1.0, faults=[Fault.TRUNCATE], paths="oci-layout$"
    ) as proxy:
        store = open_store("/mirror", {**s3_server.driver(bucket), "regionendpoint": proxy.url})
        assert isinstance(store, S3Store)
        with pytest.raises(StoreError) as caught:
            store.backend.get("a/oci-layout")
        assert proxy.injected() == {"truncate": 1}
    assert "a/oci-layout" in str(caught.value) and bucket in str(caught.value)
    assert classify(caught.value)
    s3_server.drop(bucket)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bucket": ""}, "bucket"),
        ({"chunksize": 1024}, "chunksize"),
        ({"secure": "maybe"}, "secure"),
        ({"name": "gcs"}, "name"),
    ],
)
def test_bad_driver_values_are_named(
    s3_server: S3Server, change: dict[str, Any], field: str
) -> None:
    """The section is parsed by the config model: a bad value is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=f"storage.storageDriver.{field}"):
        open_store("/mirror", {**s3_server.driver("b"), **change})


def test_secrets_stay_out_of_reprs_and_the_location(logged: Logged) -> None:
    secret = logged.driver["secretkey"]
    assert logged.store.location() == f"s3://{logged.bucket}/mirror"
    assert secret not in repr(logged.store)
    assert secret not in repr(logged.store.settings)  # type: ignore[attr-defined]


def test_the_config_models_driver_section_opens_the_store(logged: Logged) -> None:
    """The config module's pydantic model goes to open_store as is (zot's keys, SecretStr)."""
    config = StorageConfig.model_validate(
        {"rootDirectory": "/mirror", "storageDriver": logged.driver}
    )
    store = open_store(config.root_directory, config.storage_driver)
    data = b"via the config model"
    store.put_blob("cfg", Digest.of(data), len(data), [data])
    assert logged.store.read_blob("cfg", Digest.of(data)) == data


# -- settings (pure) ------------------------------------------------------------------------


def test_driver_settings_follow_distribution() -> None:
    from syncworker.config.storeopen import s3_settings
    from syncworker.store.s3settings import MAX_PARTS, PART_SIZE, S3Settings

    def settings(driver: dict[str, Any], default_root: str = "") -> S3Settings:
        model = S3DriverConfig.model_validate({"name": "s3", **driver})
        return s3_settings(model, default_root)

    bare = settings({"bucket": "b", "regionendpoint": "minio:9000", "secure": "false"})
    assert bare.endpoint == "http://minio:9000" and bare.path_style  # custom endpoint
    aws = settings({"bucket": "b", "region": "eu-west-1"}, default_root="/srv/zot")
    assert aws.endpoint is None and not aws.path_style and aws.root == "srv/zot"
    explicit = settings(
        {"bucket": "b", "regionendpoint": "https://s3.example", "forcepathstyle": False}
    )
    assert not explicit.path_style
    assert aws.part_size_for(None) == PART_SIZE
    assert aws.part_size_for(10 * 1024**4) * MAX_PARTS >= 10 * 1024**4  # 10 TiB still fits
    assert settings({"bucket": "b", "keyid": "k"}).object_args() == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "k",
    }
    hidden = settings({"bucket": "b", "regionendpoint": "http://user:pw@h:1", "secretkey": "pw"})
    assert "pw" not in hidden.where() and "pw" not in repr(hidden)
