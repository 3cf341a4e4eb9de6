"""Pull-through: what an ``onDemand`` registry's content rules map, and the store lacks, is
mirrored while the client waits (zot's ``onDemand``), then served.

Only a destination name that a content rule of an ``onDemand`` registry maps back to an
upstream repository is ever fetched: any other name is unknown at once, without a request
upstream (never an open proxy). Identical requests in one process share one copy; across
replicas the copy itself is single-flight (the engine's image flight, in Redis with
workers), so a blob is fetched once for the fleet. A client waits at most ``wait``
seconds, then is answered 503 with ``Retry-After`` and retries, the copy going on. A
replica holds at most :data:`MAX_FLIGHTS` copies, running or waiting their turn: past it a
new one is refused at once (503), so a client asking for many references (any digest of a
mapped name is a copy) cannot queue upstream requests without end.

A referrers listing is advisory (spec.md "Listing Referrers": a client such as oras or
notation takes what is listed and asks again later), so it is never failed by a copy: past
the wait, or when no copy can start, it is answered from the store as it is. And a
subject's referrers copied less than :data:`REFERRERS_FRESH_SECONDS` ago are listed without
another copy: one client run (``oras discover`` walking a tree, ``notation verify`` asking
per ``artifactType``) lists the same subject again and again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from syncworker.config.syncextension import RegistryConfig
from syncworker.errors import ContentError
from syncworker.oci import Digest
from syncworker.serve.apierrors import ApiError

__all__ = [
    "COPY_THREADS",
    "MAX_FLIGHTS",
    "REFERRERS_FRESH_SECONDS",
    "Copy",
    "Counter",
    "OnDemand",
    "Source",
]

log = logging.getLogger(__name__)

# Copies started by one replica at once; more wait their turn (each also waits in a queue
# of the workers when Redis is configured).
COPY_THREADS = 16
# Copies one replica holds, running or waiting for a thread: a few minutes of work for
# COPY_THREADS, and a bound on what one client can make it queue.
MAX_FLIGHTS = 256
# What a 503 tells a client to wait before it retries (RFC 9110 section 10.2.3).
RETRY_AFTER_SECONDS = 5
# A subject's referrers copied this recently are listed from the store without a copy: the
# listings of one client run share one, and a referrer pushed upstream shows within it.
REFERRERS_FRESH_SECONDS = 10.0

#: Copy one reference of a source: (registry, upstream repository, tag or digest); returns
#: when the copy has ended, whatever its outcome (the store then tells).
Copy = Callable[[str, str, str], None]
#: A copy in flight: (registry, upstream repository, references).
_Key = tuple[str, str, tuple[str, ...]]
#: What is counted of each fill: its kind (image, referrers) and outcome.
Counter = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class Source:
    registry: str
    repo: str


class OnDemand:
    """The :class:`~syncworker.serve.context.Filler` of the ``onDemand`` registries of a
    configuration, copying through ``copy``."""

    def __init__(
        self,
        registries: list[RegistryConfig],
        copy: Copy,
        wait: float,
        counter: Counter | None = None,
        stopping: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registries = [r for r in registries if r.on_demand]
        self._copy, self._wait, self._counter = copy, wait, counter
        # Set by close(): a copy that waits on the workers stops waiting.
        self._stopping = stopping or threading.Event()
        self._pool = ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="ondemand")
        # Reentrant: a flight that ends at once runs its done-callback under the guard.
        self._guard = threading.RLock()
        self._flights: dict[_Key, Future[None]] = {}
        # When each referrers copy ended (by clock), for REFERRERS_FRESH_SECONDS.
        self._clock = clock
        self._copied: dict[_Key, float] = {}

    def maps(self, name: str) -> bool:
        return self._source(name, None) is not None

    def fill_image(self, name: str, reference: str) -> None:
        tag = None if ":" in reference else reference
        source = self._source(name, tag)
        if source is None:
            return
        outcome = self._fill("image", source, (reference,))
        if outcome == "refused":
            stopping = self._stopping.is_set()
            why = "the server is stopping" if stopping else "too many images are being mirrored"
            raise ApiError(
                503,
                "UNAVAILABLE",
                f"{source.repo}:{reference} cannot start mirroring now: {why}; retry",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        if outcome == "timeout":
            raise ApiError(
                503,
                "UNAVAILABLE",
                f"{source.registry}/{source.repo}:{reference} is being mirrored; retry",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )

    def fill_referrers(self, name: str, subject: Digest, artifact_type: str | None) -> None:
        """A subject's referrers as the upstream lists them now, copied into the store
        (zot's ``SyncReference``) by a copy of the subject by digest: it takes those the
        referrers API lists, and the subject's special tags (those an upstream without
        the API keeps under its tag-schema tag). Every ``artifactType`` is copied: the
        listing filters. Never raises: past the wait the listing is answered from the
        store."""
        source = self._source(name, None)
        if source is None:
            return
        references = (str(subject),)
        key = (source.registry, source.repo, references)
        with self._guard:
            copied = self._copied.get(key)
        if copied is not None and self._clock() - copied < REFERRERS_FRESH_SECONDS:
            self._count("referrers", "fresh")
            return
        if self._fill("referrers", source, references) in ("ok", "failed"):
            self._fresh(key)

    def close(self) -> None:
        """No copy starts from here on; one waiting on the workers stops waiting (the task
        goes on there), so the process can end without waiting for them."""
        with self._guard:  # so no flight is submitted to the pool once it is shut
            self._stopping.set()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _source(self, name: str, tag: str | None) -> Source | None:
        """The first ``onDemand`` registry (in configuration order) whose rules store an
        upstream repository as ``name`` (and keep ``tag``), and that repository as docker
        spells it (Docker Hub's ``alpine`` is ``library/alpine``)."""
        for entry in self._registries:
            rules = entry.content_rules()
            try:
                sources = rules.sources(name)
            except ContentError:
                continue
            for repo in map(entry.upstream_repository, sources):
                if entry.repos and repo not in entry.repos:
                    continue
                if tag is None or rules.filter_tags(repo, [tag]):
                    return Source(entry.name, repo)
        return None

    def _fill(self, kind: str, source: Source, references: tuple[str, ...]) -> str:
        """Waits for the copy of ``references``, started if none is in flight; its outcome
        (ok, failed, timeout: still running, refused: none could start), counted."""
        future = self._flight(source, references)
        outcome = "refused" if future is None else "ok"
        try:
            if future is not None:
                future.result(timeout=self._wait)
        except FutureTimeout:
            outcome = "timeout"
        except Exception as exc:  # a failed copy: the lookup after it answers 404
            log.warning("on-demand %s of %s/%s %s failed: %s",
                        kind, source.registry, source.repo, references[0], exc)  # fmt: skip
            outcome = "failed"
        self._count(kind, outcome)
        return outcome

    def _fresh(self, key: _Key) -> None:
        """Notes that the referrers copy ``key`` has just ended; forgets those past
        REFERRERS_FRESH_SECONDS, so the record stays as small as the recent listings."""
        now = self._clock()
        with self._guard:
            self._copied[key] = now
            for old in [k for k, t in self._copied.items() if now - t >= REFERRERS_FRESH_SECONDS]:
                del self._copied[old]

    def _flight(self, source: Source, references: tuple[str, ...]) -> Future[None] | None:
        """The copies of ``references`` in flight in this process, started if none is;
        None when MAX_FLIGHTS are already held, or once :meth:`close` was called (a
        keep-alive connection is still answered while the server stops)."""
        key: _Key = (source.registry, source.repo, references)
        with self._guard:
            found = self._flights.get(key)
            if found is None:
                if len(self._flights) >= MAX_FLIGHTS or self._stopping.is_set():
                    return None
                found = self._pool.submit(self._copy_all, source, references)
                self._flights[key] = found
                found.add_done_callback(lambda _: self._landed(key))
        return found

    def _copy_all(self, source: Source, references: tuple[str, ...]) -> None:
        for reference in references:
            self._copy(source.registry, source.repo, reference)

    def _landed(self, key: _Key) -> None:
        with self._guard:
            self._flights.pop(key, None)

    def _count(self, kind: str, outcome: str) -> None:
        if self._counter is not None:
            self._counter(kind, outcome)
