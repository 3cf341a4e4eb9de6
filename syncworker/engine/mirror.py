"""The engine's facade: ``sync_repo``, ``sync_image`` and catalog pages for a set of upstreams.

It knows nothing of Celery, Redis or the configuration file: the embedded ``syncworker sync``,
the Celery tasks and the tests build it from plain values (:class:`Upstream` per registry, a
store, a :class:`Locks`) and drive this same object.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from syncworker.engine.blobcopy import BlobCopier, BlobStats
from syncworker.engine.claims import check_claim, give_back, take_claim
from syncworker.engine.dryrun import PlanSink
from syncworker.engine.events import NO_EVENTS, BlobOutcome, Events
from syncworker.engine.images import TreeWalker
from syncworker.engine.locks import HELD, Locks, RepoHold
from syncworker.engine.plan import LayoutMediaTypes
from syncworker.engine.repair import TreeRepair
from syncworker.engine.repo import DEFAULT_TAG_CONCURRENCY, RepoJob
from syncworker.engine.results import Failure, RepoResult
from syncworker.engine.sinks import CopySink, Sink
from syncworker.engine.sources import configured_sources, source_of
from syncworker.engine.treecheck import BrokenTree
from syncworker.engine.upstream import Upstream
from syncworker.errors import ConfigError, ContentError, SyncworkerError
from syncworker.oci import Platform, Reference, validate_repository
from syncworker.registry import Deadline, RegistryClient
from syncworker.registry.budget import identity_of
from syncworker.registry.catalog import MAX_PAGE_SIZE
from syncworker.registry.gates import Limiters, LocalLimiters, gates_for
from syncworker.store import Source, Store, held
from syncworker.waits import REPO_WAIT

__all__ = ["Mirror"]

log = logging.getLogger(__name__)
# Blob copies, and tags beyond the one each repository's own thread runs, in flight at once
# in the process: the config's defaults (8 repositories of 4 blobs and 4 tags each).
DEFAULT_BLOB_THREADS = 8 * 4
DEFAULT_TAG_THREADS = 8 * (DEFAULT_TAG_CONCURRENCY - 1)


class Mirror:
    """Mirrors repositories and images of ``upstreams`` (keyed by registry name) into
    ``store``; thread-safe, one per process. ``layout_media_types``: see
    ``index_descriptor``; ``tag_concurrency``: tags of one repository at a time.
    ``limiters`` holds the upstreams' rate limits (in this process unless given);
    ``events`` is told of requests, blobs, waits and finished repositories."""

    def __init__(
        self,
        upstreams: Mapping[str, Upstream],
        store: Store,
        locks: Locks,
        *,
        blob_threads: int = DEFAULT_BLOB_THREADS,
        tag_threads: int = DEFAULT_TAG_THREADS,
        layout_media_types: LayoutMediaTypes = "preserve",
        tag_concurrency: int = DEFAULT_TAG_CONCURRENCY,
        limiters: Limiters | None = None,
        events: Events = NO_EVENTS,
    ) -> None:
        self.upstreams = dict(upstreams)
        self.store = store
        self.locks = locks
        self._layout_media_types: LayoutMediaTypes = layout_media_types
        self._tag_concurrency = tag_concurrency
        self._clients: dict[str, RegistryClient] = {}
        self._clients_lock = threading.Lock()
        self._tag_pool = ThreadPoolExecutor(max_workers=tag_threads, thread_name_prefix="tag")
        self._blob_pool = ThreadPoolExecutor(max_workers=blob_threads, thread_name_prefix="blob")
        self._blobs = BlobCopier(store, locks)
        self._limiters = limiters or LocalLimiters()
        self._events = events

    @property
    def events(self) -> Events:
        """What this mirror tells of its work (the runner tells it of catalog pages too)."""
        return self._events

    def close(self) -> None:
        """Wait for the tags and blob copies in flight, then close every upstream's
        connections. Once no job runs: a job still running cannot start its tags."""
        self._tag_pool.shutdown(wait=True)  # its tags hand blobs to the blob pool
        self._blob_pool.shutdown(wait=True)
        with self._clients_lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- upstreams ---------------------------------------------------------------------

    def upstream(self, registry: str) -> Upstream:
        """The upstream named ``registry``; :class:`ConfigError` for an unknown name."""
        found = self.upstreams.get(registry)
        if found is None:
            known = ", ".join(self.upstreams) or "none"
            where = f"no registry named {registry!r} in the config this process started with"
            raise ConfigError("extensions.sync.registries", f"{where} (its registries: {known})")
        return found

    def client(self, registry: str) -> RegistryClient:
        with self._clients_lock:
            client = self._clients.get(registry)
            if client is None:
                up = self.upstream(registry)
                login = next(iter((up.credentials or {}).values()), None)
                gates = gates_for(self._limiters, registry, up.options, identity_of(login))
                hook = self._events.requests(registry)
                client = RegistryClient(up.urls, up.credentials, up.options, gates=gates, hook=hook)
                self._clients[registry] = client
            return client

    def destination(self, registry: str, upstream_repo: str) -> str | None:
        """The store repository for ``upstream_repo``, or None if no content rule takes it."""
        validate_repository(upstream_repo)
        return self.upstream(registry).rules.destination(upstream_repo)

    def sources(self, dest_repo: str) -> list[Source]:
        """The sources whose content rules store into ``dest_repo``."""
        return configured_sources(self.upstreams, dest_repo)

    def platforms_of(self, dest_repo: str) -> tuple[Platform, ...]:
        """The platforms the source of ``dest_repo`` keeps of multi-platform indexes; all
        (empty) when it has no single source."""
        try:
            return self.upstream(
                source_of(self.store, self.upstreams, dest_repo).registry
            ).platforms
        except SyncworkerError:
            return ()

    def list_page(
        self,
        registry: str,
        last: str | None = None,
        n: int = MAX_PAGE_SIZE,
        *,
        visited: Container[str] = (),
    ) -> tuple[list[str], str | None]:
        """One page of the repositories to mirror (the configured ``repos`` or the
        upstream catalog), after ``last``; with the ``last`` for the next page, or None.

        A next ``last`` equal to ``last`` or to one of ``visited`` (the cursors a walk
        already used) is a :class:`ContentError`: the upstream ignores ``last``, or its
        ``Link`` goes back, and asking again would return the same pages forever.
        """
        up = self.upstream(registry)
        if up.repos:
            names = up.repos
            start = (
                0
                if last is None
                else next((i for i, r in enumerate(names) if r > last), len(names))
            )
            page = list(names[start : start + n])
            more = start + n < len(names)
        else:
            page, next_last = self.client(registry).catalog_page(last, n)
            more = next_last is not None
        following = page[-1] if more and page else None
        if following is not None and (following == last or following in visited):
            raise ContentError(f"catalog pagination does not advance: {following[:200]!r} again")
        return [r for r in page if up.rules.match(r) is not None], following

    # -- work --------------------------------------------------------------------------

    def sync_repo(
        self,
        registry: str,
        upstream_repo: str,
        *,
        lock_wait: float | None = REPO_WAIT,
        listed: bool = False,
    ) -> RepoResult:
        """Mirror every kept tag of ``upstream_repo``; failures are in the result, never raised,
        except the repository lock's: :class:`~syncworker.errors.LockBusy` when ``lock_wait``
        runs out, or the error of a lock that cannot be taken (Redis, the store). ``listed``:
        the repository comes from :meth:`list_page`, so if that read the upstream's catalog,
        a repository without tags is skipped (``skip_reason``) instead of failed."""
        started = time.monotonic()
        self._events.repo_started(registry, upstream_repo)
        result = self._sync_repo(registry, upstream_repo, lock_wait, listed)
        if result.skip_reason is not None:
            log.info("%s/%s: skipped, %s", registry, upstream_repo, result.skip_reason)
        self._events.repo_done(result, time.monotonic() - started)
        return result

    def _sync_repo(
        self, registry: str, upstream_repo: str, lock_wait: float | None, listed: bool
    ) -> RepoResult:
        up = self.upstream(registry)
        dest_repo = self._destination_or_failure(registry, upstream_repo)
        if isinstance(dest_repo, RepoResult):
            return dest_repo

        with self._repo_lock(registry, dest_repo, lock_wait) as hold:

            def run() -> RepoResult:  # its syncTimeout starts once the lock is held
                job = self._job(up, upstream_repo, dest_repo, hold)
                job.catalogued = _catalogued(up, listed)
                return job.run(up.rules)

            return self._claimed(registry, upstream_repo, dest_repo, hold, run)

    def sync_image(
        self, registry: str, upstream_repo: str, reference: str, *, lock_wait: float | None = None
    ) -> RepoResult:
        """Mirror one tag or digest of ``upstream_repo`` with its referrers. It is named
        as docker spells it (Docker Hub's ``alpine`` is ``library/alpine``), upstream and
        to the content rules, so it lands where a scheduled sync puts it."""
        up = self.upstream(registry)
        upstream_repo = up.repository(upstream_repo)
        dest_repo = self._destination_or_failure(registry, upstream_repo)
        if isinstance(dest_repo, RepoResult):
            return dest_repo
        try:
            ref = Reference.of(upstream_repo, reference)
        except ContentError as exc:
            return self._failed(registry, upstream_repo, reference, exc)

        with self._repo_lock(registry, dest_repo, lock_wait) as hold:

            def run() -> RepoResult:
                job = self._job(up, upstream_repo, dest_repo, hold)
                if ref.tag is not None:
                    job.run_single_tag(ref.tag)
                else:
                    assert ref.digest is not None
                    job.run_single_digest(ref.digest)
                return job.result

            return self._claimed(registry, upstream_repo, dest_repo, hold, run)

    @contextmanager
    def _repo_lock(self, registry: str, dest_repo: str, wait: float | None) -> Iterator[RepoHold]:
        """``dest_repo``'s lock, and the store's own hold on it when it has one (so a gc
        in any process is kept out: ``store.held``); telling the events how long other
        holders kept us waiting."""
        asked = time.monotonic()
        with self.locks.repo_lock(dest_repo, blocking_timeout=wait) as hold:
            left = None if wait is None else max(0.0, wait - (time.monotonic() - asked))
            with held(self.store, dest_repo, left):
                self._events.waited(registry, "lock", time.monotonic() - asked)
                yield hold

    def _claimed(
        self,
        registry: str,
        upstream_repo: str,
        dest_repo: str,
        hold: RepoHold,
        work: Callable[[], RepoResult],
    ) -> RepoResult:
        """``work()`` once this source holds ``dest_repo``'s claim (:mod:`.claims`); the
        failed result naming both sources when another one holds it."""
        source = Source(registry, upstream_repo)
        try:
            taken = take_claim(self.store, dest_repo, source)
        except SyncworkerError as exc:
            refused = self._failed(registry, upstream_repo, None, exc)
            log.warning("%s", refused.failures[0])
            return refused
        result = work()
        if taken:
            give_back(self.store, dest_repo, source, hold, result)
        return result

    def _job(
        self, up: Upstream, upstream_repo: str, dest_repo: str, hold: RepoHold | None = None
    ) -> RepoJob:
        """The job of ``upstream_repo``: into the store under ``hold``, its repository
        lock, or without one into memory (a dry run, of which observers are told nothing
        but its requests)."""
        client, deadline = self._bounded(up)
        sink: Sink = PlanSink(client, upstream_repo, self.store)
        if hold is not None:
            blobs = self._job_blobs(up.name, deadline)
            sink = CopySink(client, upstream_repo, self.store, blobs, self._blob_pool, deadline)
        return RepoJob(
            client=client,
            store=self.store,
            sink=sink,
            tag_pool=self._tag_pool,
            deadline=deadline,
            platforms=up.platforms,
            registry=up.name,
            upstream_repo=upstream_repo,
            dest_repo=dest_repo,
            only_signed=up.only_signed,
            layout_media_types=self._layout_media_types,
            tag_concurrency=self._tag_concurrency,
            prune=up.prune,
            events=NO_EVENTS if hold is None else self._events,
            hold=HELD if hold is None else hold,
        )

    def _bounded(self, up: Upstream) -> tuple[RegistryClient, Deadline]:
        """The client of ``up`` for one job, bounded by the job's deadline: zot's
        ``syncTimeout`` when set (one repository's), else none until the job's thread is
        interrupted (:meth:`Deadline.stopping`)."""
        limit = up.sync_timeout
        if limit is None:
            deadline = Deadline.unbounded()
        else:
            deadline = Deadline.after(limit, f"syncTimeout ({limit:g}s)")
        return self.client(up.name).bounded(deadline), deadline

    def _job_blobs(self, registry: str, deadline: Deadline) -> BlobCopier:
        blobs = self._blobs
        if self._events is not NO_EVENTS:
            blobs = BlobCopier(self.store, self.locks, on_done=self._blob_reporter(registry))
        return blobs.bound(registry, deadline)

    def repair(
        self, dest_repo: str, broken: Sequence[BrokenTree], *, lock_wait: float | None = None
    ) -> RepoResult:
        """Copy ``broken`` trees of ``dest_repo`` again from its one source, trusting
        nothing present (:mod:`syncworker.engine.repair`); failures are in the result."""
        try:
            source = source_of(self.store, self.upstreams, dest_repo)
        except SyncworkerError as exc:
            result = RepoResult("", dest_repo, dest_repo)
            result.failures.append(Failure("", dest_repo, None, f"cannot repair: {exc}"))
            return result
        registry, upstream_repo = source.registry, source.repository
        up = self.upstream(registry)
        deadline = Deadline.unbounded()  # no syncTimeout: a repair copies whole trees
        client = self.client(registry).bounded(deadline)
        blobs = BlobCopier(self.store, self.locks, link=False).bound(registry, deadline)
        sink = CopySink(
            client, upstream_repo, self.store, blobs, self._blob_pool, deadline,
            trust_present=False,
        )  # fmt: skip
        images = TreeWalker(sink, up.platforms)
        repair = TreeRepair(self.store, images, registry, upstream_repo, dest_repo)
        with self._repo_lock(registry, dest_repo, lock_wait) as hold:
            return self._claimed(
                registry, upstream_repo, dest_repo, hold, lambda: repair.repair(broken)
            )

    def plan_repo(self, registry: str, upstream_repo: str, *, listed: bool = False) -> RepoResult:
        """What ``sync_repo`` would do, without writing (a :class:`RepoPlan`); no lock."""
        up = self.upstream(registry)
        dest_repo = self._destination_or_failure(registry, upstream_repo)
        if isinstance(dest_repo, RepoResult):
            return dest_repo
        try:
            check_claim(self.store, dest_repo, Source(registry, upstream_repo))
        except SyncworkerError as exc:
            return self._failed(registry, upstream_repo, None, exc)
        job = self._job(up, upstream_repo, dest_repo)
        job.catalogued = _catalogued(up, listed)
        plan = job.run(up.rules)
        plan.copied.sort()
        plan.skipped.sort()
        return plan

    def _blob_reporter(self, registry: str) -> Callable[[BlobStats, float], None]:
        def report(stats: BlobStats, seconds: float) -> None:
            outcome: BlobOutcome = "fetched" if stats.fetched else "linked"
            self._events.blob_done(registry, outcome, stats.bytes, seconds)

        return report

    def _destination_or_failure(self, registry: str, upstream_repo: str) -> str | RepoResult:
        try:
            dest_repo = self.destination(registry, upstream_repo)
        except SyncworkerError as exc:
            return self._failed(registry, upstream_repo, None, exc)
        if dest_repo is None:
            reason = "no content rule matches this repository"
            return self._failed(registry, upstream_repo, None, ContentError(reason))
        return dest_repo

    def _failed(
        self, registry: str, upstream_repo: str, tag: str | None, exc: SyncworkerError
    ) -> RepoResult:
        result = RepoResult(registry, upstream_repo, None)
        result.failures.append(Failure(registry, upstream_repo, tag, str(exc)))
        return result


def _catalogued(up: Upstream, listed: bool) -> bool:
    """A listed repository came from the upstream's catalog unless the entry names its
    ``repos`` (a configured name that answers 404 is a mistake to report)."""
    return listed and not up.repos
