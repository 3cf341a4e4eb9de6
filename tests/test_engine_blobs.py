"""The blob copier's retry decision: a stream broken half-way, or whose bytes arrived
altered, is fetched again from the start; other refused content is not. First with a
scripted client (the decision alone), then with the real client against a loopback stub
that injects failures, counting the requests it receives: one loop, never nested ones.
(Copying itself is tested against a real registry in tests/test_sync_e2e.py.)"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from syncworker.engine import LocalLocks, replay
from syncworker.engine.blobcopy import BlobCopier
from syncworker.engine.replay import REPLAY_LIMIT
from syncworker.errors import (
    DeadlineExceededError,
    DigestMismatchError,
    RegistryError,
    SizeLimitError,
    StoreError,
    TransportError,
)
from syncworker.oci import Descriptor, Digest, VerifyingReader
from syncworker.registry import ClientOptions, Deadline, RegistryClient
from syncworker.retry import REQUESTS, Retrying
from syncworker.store.fs import FsStore
from tests.support.hostile import Answer, HostileRegistry

DATA = b"layer bytes " * 1000
DESC = Descriptor("application/octet-stream", Digest.of(DATA), len(DATA))


class ScriptedClient:
    """Breaks the first ``breaks`` streams half-way, or always sends ``body``."""

    refetching = Retrying(REQUESTS.but(retries=2, base=0.01))

    def __init__(self, breaks: int = 0, body: bytes = DATA) -> None:
        self.breaks = breaks
        self.body = body
        self.calls = 0

    @contextmanager
    def blob(self, repo: str, descriptor: Descriptor) -> Iterator[VerifyingReader]:
        self.calls += 1
        broken = self.calls <= self.breaks

        def chunks() -> Iterator[bytes]:
            yield self.body[:100]
            if broken:
                raise TransportError("connection reset by peer")
            yield self.body[100:]

        yield VerifyingReader(chunks(), descriptor.digest, descriptor.size)


@pytest.fixture
def store(tmp_path: Path) -> FsStore:
    return FsStore(tmp_path)


def test_stream_broken_half_way_is_fetched_again(store: FsStore) -> None:
    sleeps: list[float] = []
    client = ScriptedClient(breaks=2)
    BlobCopier(store, LocalLocks(), sleep=sleeps.append).copy(client, "r", "r", DESC)
    assert client.calls == 3 and len(sleeps) == 2
    assert store.has_blob("r", DESC.digest)


def test_gives_up_after_max_retries(store: FsStore) -> None:
    client = ScriptedClient(breaks=10)
    copier = BlobCopier(store, LocalLocks(), sleep=lambda _: None)
    with pytest.raises(TransportError):
        copier.copy(client, "r", "r", DESC)
    assert client.calls == 3 and not store.has_blob("r", DESC.digest)


def test_altered_bytes_are_fetched_again_then_named(store: FsStore) -> None:
    client = ScriptedClient(body=b"X" * len(DATA))
    copier = BlobCopier(store, LocalLocks(), sleep=lambda _: None)
    with pytest.raises(DigestMismatchError, match="the same after 3 fetches"):
        copier.copy(client, "r", "r", DESC)
    assert client.calls == 3 and not store.has_blob("r", DESC.digest)


def test_refused_content_is_not_retried(store: FsStore) -> None:
    client = ScriptedClient(body=DATA + b"more than declared")
    copier = BlobCopier(store, LocalLocks(), sleep=lambda _: None)
    with pytest.raises(SizeLimitError):
        copier.copy(client, "r", "r", DESC)
    assert client.calls == 1 and not store.has_blob("r", DESC.digest)


# -- request counts against a loopback stub ----------------------------------------------

RETRIES = 3
BLOB_PATH = f"/v2/r/blobs/{DESC.digest}"
FLIPPED = bytes([DATA[0] ^ 1]) + DATA[1:]


@pytest.fixture
def upstream() -> Iterator[HostileRegistry]:
    server = HostileRegistry()
    server.route("GET", BLOB_PATH, Answer(200, DATA))
    yield server
    server.close()


def _copy(upstream: HostileRegistry, store: FsStore) -> None:
    options = ClientOptions(max_retries=RETRIES, retry_delay=0.001, timeout=10.0)
    with RegistryClient([upstream.url], options=options) as client:
        BlobCopier(store, LocalLocks(), sleep=lambda _: None).copy(client, "r", "r", DESC)


@pytest.mark.parametrize(
    "injected",
    [
        Answer(503),
        Answer(429, headers={"Retry-After": "0"}),
        Answer(200, FLIPPED),  # a proxy flipped one byte
        Answer(200, DATA[:100], {"Content-Length": str(len(DATA))}),  # cut short
    ],
    ids=["503", "429", "flipped-byte", "short-body"],
)
def test_one_transient_failure_costs_one_more_request(
    upstream: HostileRegistry, store: FsStore, injected: Answer
) -> None:
    upstream.first("GET", BLOB_PATH, injected)
    _copy(upstream, store)
    assert store.has_blob("r", DESC.digest)
    assert upstream.count("GET", BLOB_PATH) == 2


@pytest.mark.parametrize(
    ("answer", "error"),
    [(Answer(503), RegistryError), (Answer(200, FLIPPED), DigestMismatchError)],
    ids=["503", "flipped-byte"],
)
def test_a_failing_blob_costs_retries_plus_one_requests(
    upstream: HostileRegistry, store: FsStore, answer: Answer, error: type[Exception]
) -> None:
    """Not (retries + 1)²: the stream is opened with one request and retried as a whole."""
    upstream.route("GET", BLOB_PATH, answer)
    with pytest.raises(error):
        _copy(upstream, store)
    assert upstream.count("GET", BLOB_PATH) == RETRIES + 1
    assert not store.has_blob("r", DESC.digest)


class GatedStore(FsStore):
    """A filesystem store whose links wait for ``gate``, so link attempts overlap."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.linking = threading.Event()
        self.links = 0

    def link_blob(self, src_repo: str, repo: str, digest: Digest) -> None:
        self.links += 1
        self.linking.set()
        self.gate.wait(timeout=30)
        super().link_blob(src_repo, repo, digest)


def test_overlapping_copies_into_one_repository_link_once(tmp_path: Path) -> None:
    """Tags of a repository run concurrently and share layers: a second copy of a blob
    into the same repository waits for the first instead of linking it again."""
    store = GatedStore(tmp_path)
    store.put_blob("dest/b", DESC.digest, DESC.size, [DATA])
    client, copier = ScriptedClient(), BlobCopier(store, LocalLocks())
    with ThreadPoolExecutor(max_workers=3) as pool:
        first = pool.submit(copier.copy, client, "up/a", "dest/a", DESC)
        assert store.linking.wait(timeout=30)
        others = [pool.submit(copier.copy, client, "up/a", "dest/a", DESC) for _ in range(2)]
        time.sleep(0.2)  # let the others reach the store if nothing holds them back
        store.gate.set()
        stats = [f.result(timeout=60) for f in (first, *others)]
    assert (client.calls, store.links) == (0, 1)
    assert [(s.fetched, s.linked) for s in stats] == [(0, 1), (0, 0), (0, 0)]
    assert store.has_blob("dest/a", DESC.digest)


class _Hook:
    """A request hook counting what the metrics would be told."""

    def __init__(self) -> None:
        self.retries = 0

    def response(self, method: str, code: str) -> None:
        pass

    def retried(self) -> None:
        self.retries += 1

    def waited(self, seconds: float) -> None:
        pass


def test_stream_refetches_are_counted_as_the_upstreams_retries(
    upstream: HostileRegistry, store: FsStore
) -> None:
    """A refetched stream reaches the client's counters and its hook (the metric
    ``syncworker_upstream_retries_total``) like any retried request."""
    upstream.first("GET", BLOB_PATH, Answer(200, DATA[:100], {"Content-Length": str(len(DATA))}))
    hook = _Hook()
    options = ClientOptions(max_retries=RETRIES, retry_delay=0.001, timeout=10.0)
    with RegistryClient([upstream.url], options=options, hook=hook) as client:
        BlobCopier(store, LocalLocks(), sleep=lambda _: None).copy(client, "r", "r", DESC)
        assert client.stats.snapshot().retries == 1
    assert hook.retries == 1 and store.has_blob("r", DESC.digest)


def test_a_refetch_wait_never_runs_past_the_deadline(
    upstream: HostileRegistry, store: FsStore
) -> None:
    """With a retry delay longer than what is left of ``syncTimeout``, the broken stream
    fails at once with the deadline's error instead of sleeping past it."""
    upstream.route("GET", BLOB_PATH, Answer(200, DATA[:100], {"Content-Length": str(len(DATA))}))
    slept: list[float] = []
    options = ClientOptions(max_retries=RETRIES, retry_delay=30.0, timeout=10.0)
    with RegistryClient([upstream.url], options=options) as client:
        bounded = client.bounded(Deadline.after(5.0, "syncTimeout"))
        copier = BlobCopier(store, LocalLocks(), sleep=slept.append)
        with pytest.raises(DeadlineExceededError, match="syncTimeout"):
            copier.copy(bounded, "r", "r", DESC)
    assert slept == [] and upstream.count("GET", BLOB_PATH) == 1


def test_a_wait_for_another_fetch_ends_at_the_jobs_deadline(store: FsStore) -> None:
    """Another copy from the same upstream holds the blob's flight and keeps making
    progress: a job with a deadline waits no longer than that deadline, and says why."""
    locks = LocalLocks()
    holding, leave = threading.Event(), threading.Event()

    def holder() -> None:
        with locks.blob_flight(str(DESC.digest), source="up") as flight:
            holding.set()
            sent = 0
            while not leave.wait(0.02):
                sent += 1
                flight.progress(sent)

    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(holder)
        assert holding.wait(timeout=30)
        job = BlobCopier(store, locks).bound("up", Deadline.after(0.5, "syncTimeout (0.5s)"))
        with pytest.raises(DeadlineExceededError, match=r"blob sha256:.*syncTimeout \(0\.5s\)"):
            job.copy(ScriptedClient(), "r", "r", DESC)
        leave.set()
        held.result(timeout=30)


class FailingStore(FsStore):
    """A filesystem store whose first blob write fails as a registry destination's can:
    after reading ``read`` chunks (None: all of them) the upload is cut or answered 503;
    ``landed``: the blob was stored all the same (the answer was lost on the way)."""

    def __init__(self, root: Path, read: int | None, landed: bool = False) -> None:
        super().__init__(root)
        self.read, self.landed = read, landed
        self.puts = 0

    def put_blob(self, repo: str, digest: Digest, size: int | None, chunks: Iterable[bytes]) -> int:
        self.puts += 1
        if self.puts > 1:
            return super().put_blob(repo, digest, size, chunks)
        if self.landed:
            super().put_blob(repo, digest, size, chunks)
            raise StoreError("destination: PUT answer lost", unanswered=True)
        taken = list(itertools.islice(chunks, self.read)) if self.read else list(chunks)
        assert taken
        raise StoreError("destination: PUT answered 503", status=503)


def _copy_into(upstream: HostileRegistry, store: FsStore, data: bytes = DATA) -> None:
    desc = Descriptor("application/octet-stream", Digest.of(data), len(data))
    options = ClientOptions(max_retries=RETRIES, retry_delay=0.001, timeout=10.0)
    with RegistryClient([upstream.url], options=options) as client:
        BlobCopier(store, LocalLocks(), sleep=lambda _: None).copy(client, "r", "r", desc)
    assert store.has_blob("r", desc.digest)


@pytest.mark.parametrize("read", [None, 1], ids=["after-the-body", "mid-body"])
def test_a_store_failure_writes_a_small_blob_again_without_fetching_it(
    upstream: HostileRegistry, tmp_path: Path, read: int | None
) -> None:
    """The upload failed (all of it sent, or cut part-way): the blob, small enough to be
    kept, is written again from memory; the upstream is asked once."""
    store = FailingStore(tmp_path, read)
    _copy_into(upstream, store)
    assert (store.puts, upstream.count("GET", BLOB_PATH)) == (2, 1)


def test_a_blob_that_landed_despite_the_error_is_not_written_again(
    upstream: HostileRegistry, tmp_path: Path
) -> None:
    store = FailingStore(tmp_path, None, landed=True)
    _copy_into(upstream, store)
    assert (store.puts, upstream.count("GET", BLOB_PATH)) == (1, 1)


def test_a_large_blob_the_store_failed_is_fetched_again(
    upstream: HostileRegistry, tmp_path: Path
) -> None:
    """Past the replay limit nothing is kept (memory stays bounded): fetched again."""
    data = bytes(range(256)) * (REPLAY_LIMIT // 256 + 1)
    path = f"/v2/r/blobs/{Digest.of(data)}"
    upstream.route("GET", path, Answer(200, data))
    store = FailingStore(tmp_path, 1)
    _copy_into(upstream, store, data)
    assert (store.puts, upstream.count("GET", path)) == (2, 2)


@pytest.mark.parametrize("disk", ["writable", "full", "spoken for"])
def test_a_large_blob_a_spooling_store_failed_is_written_again_from_a_temporary_file(
    upstream: HostileRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disk: str
) -> None:
    """A store that asks for it (a registry destination) is given a large blob again from
    a temporary file: fetched once. A spool that cannot be written, or that would pass the
    spool space of the process, fails nothing: the blob is fetched again."""
    data = bytes(range(256)) * (REPLAY_LIMIT // 256 + 1)
    path = f"/v2/r/blobs/{Digest.of(data)}"
    upstream.route("GET", path, Answer(200, data))
    if disk == "full":

        def full(**_: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("syncworker.engine.replay.tempfile.TemporaryFile", full)
    space = replay._SpoolSpace(len(data) - 1 if disk == "spoken for" else len(data))
    monkeypatch.setattr(replay, "_space", space)
    store = FailingStore(tmp_path, 1)
    store.spools_blobs = True
    _copy_into(upstream, store, data)
    assert (store.puts, upstream.count("GET", path)) == (2, 1 if disk == "writable" else 2)
    assert space.reserve(space.limit)  # every reservation was given back
