"""The blob copier's retry decision: a stream broken half-way is fetched again from the
start; refused content is not. The client is scripted (this is a retry decision, not the
test that copying works: that is tests/test_sync_e2e.py against a real registry)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from syncworker.coord import Coordinator
from syncworker.engine.blobs import BlobCopier
from syncworker.errors import DigestMismatchError, TransportError
from syncworker.oci import Descriptor, Digest, VerifyingReader
from syncworker.registry import ClientOptions
from syncworker.store.fs import FsStore

DATA = b"layer bytes " * 1000
DESC = Descriptor("application/octet-stream", Digest.of(DATA), len(DATA))


class ScriptedClient:
    """Breaks the first ``breaks`` streams half-way, or always sends ``body``."""

    options = ClientOptions(max_retries=2, retry_delay=0.01)

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
    BlobCopier(store, Coordinator.embedded(), sleep=sleeps.append).copy(client, "r", "r", DESC)
    assert client.calls == 3 and len(sleeps) == 2
    assert store.has_blob("r", DESC.digest)


def test_gives_up_after_max_retries(store: FsStore) -> None:
    client = ScriptedClient(breaks=10)
    copier = BlobCopier(store, Coordinator.embedded(), sleep=lambda _: None)
    with pytest.raises(TransportError):
        copier.copy(client, "r", "r", DESC)
    assert client.calls == 3 and not store.has_blob("r", DESC.digest)


def test_refused_content_is_not_retried(store: FsStore) -> None:
    client = ScriptedClient(body=b"X" * len(DATA))
    copier = BlobCopier(store, Coordinator.embedded(), sleep=lambda _: None)
    with pytest.raises(DigestMismatchError):
        copier.copy(client, "r", "r", DESC)
    assert client.calls == 1 and not store.has_blob("r", DESC.digest)
