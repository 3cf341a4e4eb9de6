"""A blob's bytes, kept while it is copied, so that a store that failed to write it (a
registry destination's upload cut, or answered 503) is given them again instead of the
blob being fetched a second time from the upstream.

A small blob is kept in memory, for every store. A larger one is kept in a temporary file
only for a store that asks (``Store.spools_blobs``: a registry destination, whose upload
is one request a network can break part-way); on a disk or in S3 a second copy on disk
would cost more than the rare fetch again. The file is anonymous (unlinked at once), so a
crash leaves nothing behind; a spool that cannot be written (the disk full), or would pass
:data:`SPOOL_SPACE` with the others of the process, is not kept and the blob is fetched
again if it must be: keeping a copy never fails one.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
from collections.abc import Iterable, Iterator
from typing import IO, Self

from syncworker.errors import StoreError, SyncworkerError

__all__ = ["REPLAY_LIMIT", "SPOOL_CHUNK", "SPOOL_SPACE", "Replay"]

log = logging.getLogger(__name__)

# Blobs up to this size are kept in memory while they are copied: configs, signatures,
# attestations and small layers, most blobs by count. At most this much per blob thread
# (blobConcurrency × concurrency threads: 128 MiB with the defaults), and nothing is
# copied: the chunks kept are the ones the store was handed.
REPLAY_LIMIT = 4 * 1024 * 1024
# A spooled blob is read back in chunks of this size (memory stays one chunk).
SPOOL_CHUNK = 1024 * 1024
# Disk the spools of one process may hold at once. A blob that would pass it is not
# spooled (fetched again if its upload fails): `$TMPDIR` may be a tmpfs, which is memory.
SPOOL_SPACE = 2 * 1024 * 1024 * 1024


class _SpoolSpace:
    """The bytes reserved by the spools of this process, against :data:`SPOOL_SPACE`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    def reserve(self, size: int) -> bool:
        with self._lock:
            if self._used + size > self.limit:
                return False
            self._used += size
            return True

    def free(self, size: int) -> None:
        with self._lock:
            self._used -= size


_space = _SpoolSpace(SPOOL_SPACE)


class Replay:
    """The chunks of one blob's stream: in memory when the blob is at most ``limit`` bytes,
    else, with ``spool``, in a temporary file. Close it (a context manager) when done."""

    def __init__(self, size: int, limit: int = REPLAY_LIMIT, *, spool: bool = False) -> None:
        self._keep = size <= limit
        self._chunks: list[bytes] = []
        self._spool: IO[bytes] | None = None
        self._reserved = size if spool and not self._keep and _space.reserve(size) else 0
        self._spooling = self._reserved > 0
        #: Every chunk of a stream that ended (its verifying reader found it whole) is kept.
        self.whole = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop_spool()
        _space.free(self._reserved)
        self._reserved = 0

    def record(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """``chunks`` as they pass, kept if the blob is small enough or spooled."""
        self._chunks = []
        self.whole = False
        self._rewind()
        for chunk in chunks:
            if self._keep:
                self._chunks.append(chunk)
            elif self._spooling:
                self._write(chunk)
            yield chunk
        self.whole = self._keep or self._spooling

    def finish(self, stream: Iterator[bytes]) -> None:
        """After the store stopped reading ``stream`` (a :meth:`record`), read the rest of
        a kept blob from its source, so that the next attempt needs no fetch. A source
        that fails meanwhile leaves it not whole: the next attempt fetches again."""
        if self._keep or self._spooling:
            with contextlib.suppress(SyncworkerError):
                for _ in stream:
                    pass

    def replay(self) -> Iterator[bytes]:
        """The kept chunks, to hand to the store again (only when :attr:`whole`)."""
        if self._spool is None:
            yield from self._chunks
            return
        try:
            self._spool.seek(0)
            while chunk := self._spool.read(SPOOL_CHUNK):
                yield chunk
        except OSError as exc:
            self.whole = False  # the next attempt fetches it again
            raise StoreError(f"cannot read back the copy of a blob being uploaded: {exc}") from exc

    def _rewind(self) -> None:
        if self._spool is not None:
            self._spool.seek(0)
            self._spool.truncate()

    def _write(self, chunk: bytes) -> None:
        try:
            if self._spool is None:
                self._spool = tempfile.TemporaryFile(prefix="syncworker-blob-")  # noqa: SIM115 - closed by __exit__
            self._spool.write(chunk)
        except OSError as exc:
            log.warning("cannot keep a copy of a blob being uploaded (%s): it is fetched"
                        " again if the upload fails", exc)  # fmt: skip
            self._spooling = False
            self._drop_spool()

    def _drop_spool(self) -> None:
        if self._spool is not None:
            with contextlib.suppress(OSError):
                self._spool.close()
            self._spool = None
