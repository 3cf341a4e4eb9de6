"""A small blob's bytes, kept while it is copied, so that a store that failed to write it
(a registry destination's upload cut, or answered 503) is given them again instead of the
blob being fetched a second time from the upstream."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from syncworker.errors import SyncworkerError

__all__ = ["REPLAY_LIMIT", "Replay"]

# Blobs up to this size are kept in memory while they are copied: configs, signatures,
# attestations and small layers, most blobs by count. At most this much per blob thread
# (blobConcurrency × concurrency threads: 128 MiB with the defaults), and nothing is
# copied: the chunks kept are the ones the store was handed.
REPLAY_LIMIT = 4 * 1024 * 1024


class Replay:
    """The chunks of one blob's stream, kept when the blob is at most ``limit`` bytes."""

    def __init__(self, size: int, limit: int = REPLAY_LIMIT) -> None:
        self._keep = size <= limit
        self._chunks: list[bytes] = []
        #: Every chunk of a stream that ended (its verifying reader found it whole) is kept.
        self.whole = False

    def record(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """``chunks`` as they pass, kept if the blob is small enough."""
        self._chunks = []
        for chunk in chunks:
            if self._keep:
                self._chunks.append(chunk)
            yield chunk
        self.whole = self._keep

    def finish(self, stream: Iterator[bytes]) -> None:
        """After the store stopped reading ``stream`` (a :meth:`record`), read the rest of
        a small blob from its source, so that the next attempt needs no fetch. A source
        that fails meanwhile leaves it not whole: the next attempt fetches again."""
        if self._keep:
            with contextlib.suppress(SyncworkerError):
                for _ in stream:
                    pass

    def replay(self) -> Iterator[bytes]:
        """The kept chunks, to hand to the store again (only when :attr:`whole`)."""
        return iter(self._chunks)
