"""The primitives an OCI layout is written over: a small object store of named byte strings.

Keys are ``/``-separated names relative to the store's root (``team/app/index.json``,
``team/app/blobs/sha256/<hex>``). The layout itself (which key holds what, the order of
writes, the ``index.json`` merge) lives once in :mod:`syncworker.store.layout`; a backend
only moves bytes, in the spirit of go-containerregistry's layout over one filesystem
abstraction. Every method is safe to call from threads and raises StoreError for failures
of the backend itself (never for errors raised by the chunks it is handed).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Backend", "Listing", "Stored"]


@dataclass(frozen=True, slots=True)
class Stored:
    """A small object read whole, and the version a conditional write must match."""

    data: bytes
    version: str


@dataclass(frozen=True, slots=True)
class Listing:
    """One level below a prefix: names of the objects there, and of the "directories"."""

    files: frozenset[str]
    dirs: tuple[str, ...]


class Backend(Protocol):
    def close(self) -> None:
        """Close the connections the backend keeps open (a bucket's pool)."""
        ...

    def where(self, key: str) -> str:
        """``key`` as a path or URL for messages (never with credentials)."""
        ...

    def head(self, key: str) -> int | None:
        """The size of ``key``, or None when it does not exist."""
        ...

    def get(self, key: str) -> Stored | None:
        """A small object read whole, or None when it does not exist."""
        ...

    def open(
        self, key: str, start: int = 0, length: int | None = None
    ) -> AbstractContextManager[Iterable[bytes]]:
        """``key`` streamed in chunks, for hashing it again or serving it: ``length`` bytes
        from ``start`` (None: to the end); StoreError if it is absent or cannot be read
        (also part-way through)."""
        ...

    def local_path(self, key: str) -> str | None:
        """The local file holding ``key``, for the kernel to send (``sendfile``); None on a
        backend without local files."""
        ...

    def presign(self, key: str, expires: int) -> str | None:
        """A URL a client may GET ``key`` from for ``expires`` seconds without our
        credentials; None on a backend without such URLs."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Replace ``key`` with ``data``; readers see the old or the new bytes, never a mix."""
        ...

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` unless it exists; False if it existed. Meant for hints and small
        fixed files: after a crash a filesystem may hold the key empty, so a reader checks
        what it reads."""
        ...

    def put_if_match(self, key: str, data: bytes, version: str | None) -> bool:
        """The commit point: make every object written so far durable, then replace ``key``
        atomically if it still is at ``version`` (None: if it does not exist). False, and
        nothing replaced, when another writer got there first."""
        ...

    def write(self, key: str, chunks: Iterable[bytes], size: int | None) -> int:
        """Stream ``chunks`` into a temporary and make it ``key`` once they are exhausted
        without error; return the bytes written. An existing ``key`` is kept (the content
        is addressed by its name). Errors raised by ``chunks`` pass through unchanged and
        leave nothing at ``key``; ``size`` is a hint for buffer sizes."""
        ...

    def copy(self, src: str, dst: str) -> bool:
        """Make ``dst`` hold what ``src`` holds without the bytes passing through us (a
        hard link, a server-side copy); an existing ``dst`` is kept. False if ``src`` does
        not exist."""
        ...

    def list(self, prefix: str) -> Listing:
        """The level below ``prefix`` (``""`` for the root, else ending in ``/``)."""
        ...

    def aged(self, prefix: str) -> dict[str, tuple[int, float]]:
        """The objects one level below ``prefix``: name -> (size, seconds since it was
        last written or linked). For garbage collection, which spares young objects."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens if it is already gone."""
        ...

    def clean_leftovers(self, max_age: float | None) -> int:
        """Remove temporaries of writers that died, or untouched for ``max_age`` seconds
        (None: the backend's grace period); return how many were removed."""
        ...
