"""Batched writes of one repository's ``index.json``.

Entries are recorded once their whole tree (and referrers) is in the store, and written in
batches: a repository of thousands of tags does not rewrite its index once per tag. A batch
is written when it is full, when it is old, and when the job ends, so a crash loses at
most the listing of trees that are already stored (the next run lists them without a GET).

Each write is the job's commit point, so the repository lock is asked right before it: a
holder that lost its lock (paused past its TTL) lists nothing more, since a gc or another
sync may have changed the repository since (on S3, with no store lock, a gc may have
deleted a blob of the trees to list).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from syncworker.engine.locks import RepoHold
from syncworker.engine.plan import LayoutMediaTypes, relisted
from syncworker.engine.sinks import Sink
from syncworker.errors import SyncworkerError
from syncworker.store import IndexEntry

__all__ = ["INDEX_BATCH", "INDEX_BATCH_SECONDS", "IndexWriter"]

# Entries per index.json rewrite, and the longest an entry waits for one.
INDEX_BATCH = 64
INDEX_BATCH_SECONDS = 30.0

# Called per entry whose batch could not be written: its tag, or its digest when untagged.
OnFailure = Callable[[str, SyncworkerError], None]


class IndexWriter:
    """Collects entries for ``dest_repo`` and merges them into its index (through
    ``sink``) in batches; a context manager that writes what is left on exit. ``hold``:
    the repository's lock, asked before each write (:class:`~syncworker.errors.LockLost`
    fails the batch's entries).

    Entries of tags announced with :meth:`expect` are written in that order, whatever
    order the tags finish in, so the same content always gives the same ``index.json``.
    """

    def __init__(self, sink: Sink, dest_repo: str, on_failure: OnFailure, hold: RepoHold) -> None:
        self._sink = sink
        self._hold = hold
        self._dest_repo = dest_repo
        self._on_failure = on_failure
        self._order: deque[str] = deque()
        self._held: dict[str, list[IndexEntry]] = {}
        self._finished: set[str] = set()
        self._pending: list[IndexEntry] = []
        self._since = 0.0
        self._lock = threading.Lock()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            for key in self._order:
                self._pending.extend(self._held.pop(key, []))
            self._order.clear()
            self._write()

    def expect(self, tags: Iterable[str]) -> None:
        """Hold the entries of ``tags`` until those before them are done (:meth:`done`)."""
        with self._lock:
            for tag in tags:
                self._order.append(tag)
                self._held[tag] = []

    def add(self, entries: Sequence[IndexEntry], tag: str | None = None) -> None:
        """Record ``entries`` (of ``tag``, if announced): their trees are in the store."""
        with self._lock:
            held = self._held.get(tag) if tag is not None else None
            if held is not None:
                held.extend(entries)
            else:
                self._queue(entries)

    def done(self, tag: str) -> None:
        """``tag`` is finished (copied, unchanged or failed): release what it held."""
        with self._lock:
            self._finished.add(tag)
            while self._order and self._order[0] in self._finished:
                first = self._order.popleft()
                self._finished.discard(first)
                self._queue(self._held.pop(first))

    def relist(self, stored: Iterable[IndexEntry], layout_media_types: LayoutMediaTypes) -> None:
        """Queue the stored entries whose media type ``layout_media_types`` lists otherwise."""
        changed = [
            IndexEntry(wanted, entry.tag)
            for entry in stored
            if (wanted := relisted(entry.descriptor, layout_media_types)) is not None
        ]
        self.add(changed)

    def _queue(self, entries: Sequence[IndexEntry]) -> None:
        if not entries:
            return
        if not self._pending:
            self._since = time.monotonic()
        self._pending.extend(entries)
        full = len(self._pending) >= INDEX_BATCH
        if full or time.monotonic() - self._since >= INDEX_BATCH_SECONDS:
            self._write()

    def _write(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self._hold.ensure()
            self._sink.update_index(self._dest_repo, batch)
        except SyncworkerError as exc:
            for name in dict.fromkeys(entry.tag or str(entry.descriptor.digest) for entry in batch):
                self._on_failure(name, exc)
