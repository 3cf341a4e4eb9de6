"""Copy one blob into a repository of the store: link it if the store has it anywhere,
otherwise fetch it once for the whole cluster (a single-flight lock per digest, whose waits
``syncworker/waits.py`` bounds: another upstream's slow fetch never holds this one up)."""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Protocol

from syncworker.engine.locks import BlobFlight, Locks
from syncworker.engine.replay import Replay
from syncworker.errors import DeadlineExceededError, LockBusy, StoreError, SyncworkerError
from syncworker.heartbeat import beating, holding, pause
from syncworker.oci import Descriptor, Digest
from syncworker.registry import Deadline
from syncworker.retry import Retrying
from syncworker.store import Store

__all__ = ["BlobCopier", "BlobSource", "BlobStats"]

log = logging.getLogger(__name__)


class BlobSource(Protocol):
    @property
    def refetching(self) -> Retrying:
        """How a whole stream from this source is tried again: the source's policy, under
        its deadline, counted with its other retries."""
        ...

    def blob(
        self, repo: str, descriptor: Descriptor
    ) -> AbstractContextManager[Iterable[bytes]]: ...


class BlobStats:
    """What copying one image's blobs cost (summed by the caller)."""

    __slots__ = ("bytes", "fetched", "linked")

    def __init__(self) -> None:
        self.fetched = 0
        self.linked = 0
        self.bytes = 0

    def add(self, other: BlobStats) -> None:
        self.fetched += other.fetched
        self.linked += other.linked
        self.bytes += other.bytes


class BlobCopier:
    """``on_done``, if given, is told of each blob fetched or linked and the seconds it took;
    ``link``: False fetches a blob missing here even when another repository has it (a
    repair: that copy may be the same damaged file, hard-linked).

    :meth:`bound` gives the copier of one job: the upstream it fetches from (its blob
    flights wait on another upstream's holder only briefly) and the job's deadline (no
    flight wait outlasts it)."""

    def __init__(
        self,
        store: Store,
        locks: Locks,
        sleep: Callable[[float], None] = pause,
        on_done: Callable[[BlobStats, float], None] | None = None,
        *,
        link: bool = True,
    ) -> None:
        self._link_allowed = link
        self._store = store
        self._locks = locks
        self._sleep = sleep
        self._on_done = on_done
        self._pending: dict[tuple[str, Digest], Future[None]] = {}
        self._pending_guard = threading.Lock()
        self._source = ""
        self._deadline: Deadline | None = None

    def bound(self, source: str, deadline: Deadline | None) -> BlobCopier:
        """A view of this copier (same store, locks and copies in progress) for one job that
        fetches from upstream ``source`` until ``deadline``."""
        view = copy.copy(self)
        view._source, view._deadline = source, deadline
        return view

    def copy(
        self, client: BlobSource, upstream_repo: str, dest_repo: str, desc: Descriptor
    ) -> BlobStats:
        """Make ``desc`` present in ``dest_repo``; the bytes come from ``upstream_repo``.

        Tags of one repository run concurrently and often share layers: a copy of a blob
        into a repository that this process is already making waits for that one instead
        of linking or fetching the blob a second time (the cluster-wide flight only covers
        fetches)."""
        key = (dest_repo, desc.digest)
        mine: Future[None] = Future()
        with self._pending_guard:
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = mine
        if pending is not None:
            pending.result()  # the other copy's error, if it failed
            return BlobStats()
        try:
            stats = self._timed(client, upstream_repo, dest_repo, desc)
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        else:
            mine.set_result(None)
            return stats
        finally:
            with self._pending_guard:
                del self._pending[key]

    def _timed(
        self, client: BlobSource, upstream_repo: str, dest_repo: str, desc: Descriptor
    ) -> BlobStats:
        if self._on_done is None:
            return self._copy(client, upstream_repo, dest_repo, desc)
        started = time.monotonic()
        stats = self._copy(client, upstream_repo, dest_repo, desc)
        if stats.fetched or stats.linked:
            self._on_done(stats, time.monotonic() - started)
        return stats

    def _copy(
        self, client: BlobSource, upstream_repo: str, dest_repo: str, desc: Descriptor
    ) -> BlobStats:
        stats = BlobStats()
        if self._store.has_blob(dest_repo, desc.digest):
            return stats
        if self._link(dest_repo, desc, stats):
            return stats
        # Another worker may be fetching this digest right now: wait for it, then link. The
        # store is asked again only if another holder may have stored it since (the flight
        # says so), which saves two lookups (HEADs or GETs on a remote store) per new blob.
        with self._flight(desc.digest) as flight:
            if flight.look_again and (
                self._store.has_blob(dest_repo, desc.digest) or self._link(dest_repo, desc, stats)
            ):
                return stats
            stats.bytes = self._fetch(client, upstream_repo, dest_repo, desc, flight)
            stats.fetched = 1
        return stats

    @contextmanager
    def _flight(self, digest: Digest) -> Iterator[BlobFlight]:
        """The digest's flight, waiting for others no longer than the job's deadline, nor
        once it has ended."""
        wait = self._locks.waits.flight
        if self._deadline is not None:
            wait = min(wait, max(0.0, self._deadline.remaining()))
        given_up = self._deadline.ended if self._deadline is not None else None
        flight = self._locks.blob_flight(
            str(digest), source=self._source, blocking_timeout=wait, given_up=given_up
        )
        with ExitStack() as stack:
            try:
                held = stack.enter_context(flight)
            except LockBusy as exc:
                if self._deadline is None or self._deadline.remaining() > 0:
                    raise
                raise DeadlineExceededError(
                    f"waiting for another fetch of blob {digest}: {self._deadline.label} reached"
                ) from exc
            yield held

    def _fetch(
        self,
        client: BlobSource,
        upstream_repo: str,
        dest_repo: str,
        desc: Descriptor,
        flight: BlobFlight,
    ) -> int:
        """Stream the blob into the store, telling the flight's waiters how far it got,
        under the source's retry policy. One loop: the client opens each stream with one
        request and the store writes once per attempt.

        A stream that breaks, or whose bytes arrive altered, is fetched again from the
        start (the store kept nothing of it). A store that failed to keep the blob is
        asked first whether it landed after all (an answer lost after the upload), then
        given a small blob again from memory, or a large one from a temporary file where
        the store asks for it (:mod:`.replay`); only another large one is fetched again."""
        replay = Replay(desc.size, spool=self._store.spools_blobs)
        failures: list[SyncworkerError] = []

        def attempt() -> int:
            if failures and isinstance(failures[-1], StoreError):
                if self._store.has_blob(dest_repo, desc.digest):
                    return desc.size
                if replay.whole:
                    with _Counted(replay.replay(), flight) as kept:
                        return self._store.put_blob(dest_repo, desc.digest, desc.size, kept)
            with client.blob(upstream_repo, desc) as chunks, _Counted(chunks, flight) as counted:
                stream = replay.record(counted)
                try:
                    return self._store.put_blob(dest_repo, desc.digest, desc.size, stream)
                except StoreError:
                    replay.finish(stream)
                    raise

        def note(exc: SyncworkerError, delay: float) -> None:
            failures.append(exc)
            again = "writing it again" if isinstance(exc, StoreError) else "fetching again"
            log.warning("%s@%s: %s; %s in %.1fs", upstream_repo, desc.digest, exc, again, delay)

        with replay, holding(flight):
            return client.refetching.run(attempt, sleep=self._sleep, on_retry=note)

    def _link(self, dest_repo: str, desc: Descriptor, stats: BlobStats) -> bool:
        if not self._link_allowed:
            return False
        source = self._store.find_blob(desc.digest)
        if source is None:
            return False
        if source == dest_repo:
            # Stored into ``dest_repo`` itself since the caller looked: confirm, never link it
            # onto itself.
            return self._store.has_blob(dest_repo, desc.digest)
        try:
            self._store.link_blob(source, dest_repo, desc.digest)
        except StoreError as exc:
            # A stale hint, or a registry refusing the mount: copying still works.
            log.info(
                "%s: cannot link %s from %s (%s); copying it", dest_repo, desc.digest, source, exc
            )
            return False
        stats.linked = 1
        return True


class _Counted:
    """A blob's ``chunks`` as they are, for the store: the flight is told the bytes so far
    after each, and beats while the store holds a chunk and once the last is read (an
    upload part, the completion of a large upload): only reading from the source is
    silent. A context manager: its exit, after the store's write, ends the beating."""

    def __init__(self, chunks: Iterable[bytes], flight: BlobFlight) -> None:
        self._chunks, self._flight = chunks, flight
        self._stream = self._counted()
        self._finishing = ExitStack()

    def __enter__(self) -> Iterator[bytes]:
        return self._stream

    def __exit__(self, *exc: object) -> None:
        self._stream.close()  # a store that failed part-way left it suspended, beating
        self._finishing.close()

    def _counted(self) -> Generator[bytes, None, None]:
        total = 0
        for chunk in self._chunks:
            total += len(chunk)
            self._flight.progress(total)
            with beating(self._flight):
                yield chunk
        self._finishing.enter_context(beating(self._flight))
