"""The engine's facade: ``sync_repo``, ``sync_image`` and catalog pages for one config.

It knows nothing of Celery: the embedded ``syncworker sync``, the Celery tasks and tests
all drive this same object.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from syncworker.config import Config, RegistryConfig
from syncworker.coord import Coordinator
from syncworker.engine.blobs import BlobCopier
from syncworker.engine.images import ImageCopier
from syncworker.engine.repo import RepoJob
from syncworker.engine.results import Failure, NullProgress, Progress, RepoResult
from syncworker.errors import ContentError, SyncworkerError
from syncworker.oci import Reference, validate_repository
from syncworker.registry import Deadline, RegistryClient
from syncworker.store import Store

__all__ = ["Mirror"]

# distribution-spec: registries may cap n; ECR rejects n > 1000, so never ask for more.
CATALOG_PAGE_SIZE = 1000
# How long sync_repo waits for another holder of the same destination's lock before it
# gives up (the Celery task then retries later). None: wait as long as it takes.
DEFAULT_LOCK_WAIT: float | None = None


class Mirror:
    def __init__(
        self,
        config: Config,
        store: Store,
        coord: Coordinator,
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.coord = coord
        self.progress: Progress = progress or NullProgress()
        self._clients: dict[str, RegistryClient] = {}
        self._clients_lock = threading.Lock()
        self._blob_pool = ThreadPoolExecutor(
            max_workers=config.syncworker.blob_concurrency * config.syncworker.concurrency,
            thread_name_prefix="blob",
        )
        self._blobs = BlobCopier(store, coord)

    def close(self) -> None:
        self._blob_pool.shutdown(wait=True)

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- upstreams ---------------------------------------------------------------------

    def client(self, registry: str) -> RegistryClient:
        with self._clients_lock:
            client = self._clients.get(registry)
            if client is None:
                cfg = self.config.registry(registry)
                options = cfg.client_options(self.config.syncworker.max_blob_size)
                client = RegistryClient(cfg.urls, self.config.credentials_for(cfg), options)
                self._clients[registry] = client
            return client

    def destination(self, registry: str, repo: str) -> str | None:
        """The store repository for upstream ``repo``, or None if no content rule takes it."""
        validate_repository(repo)
        return self.config.registry(registry).content_rules().destination(repo)

    def list_page(
        self, registry: str, last: str | None = None, n: int = CATALOG_PAGE_SIZE
    ) -> tuple[list[str], str | None]:
        """One page of the repositories to mirror (the configured ``repos`` or the
        upstream catalog), after ``last``; with the ``last`` for the next page, or None."""
        cfg = self.config.registry(registry)
        if cfg.repos:
            names = sorted(cfg.repos)
            start = (
                0
                if last is None
                else next((i for i, r in enumerate(names) if r > last), len(names))
            )
            page = names[start : start + n]
            more = start + n < len(names)
        else:
            page, next_last = self.client(registry).catalog_page(last, n)
            more = next_last is not None
        following = page[-1] if more and page else None
        if following is not None and following == last:
            # The upstream ignored ``last``: asking again would return this page forever.
            raise ContentError(f"catalog pagination does not advance past {last[:200]!r}")
        rules = cfg.content_rules()
        return [r for r in page if rules.match(r) is not None], following

    # -- work --------------------------------------------------------------------------

    def sync_repo(
        self, registry: str, repo: str, *, lock_wait: float | None = DEFAULT_LOCK_WAIT
    ) -> RepoResult:
        """Mirror every kept tag of ``repo``; failures are in the result, never raised,
        except :class:`~syncworker.coord.LockBusy` when ``lock_wait`` runs out."""
        cfg = self.config.registry(registry)
        dest = self._destination_or_failure(registry, repo)
        if isinstance(dest, RepoResult):
            return dest
        with self.coord.repo_lock(dest, blocking_timeout=lock_wait):
            job = self._job(cfg, repo, dest)
            return job.run(cfg.content_rules())

    def sync_image(
        self, registry: str, repo: str, reference: str, *, lock_wait: float | None = None
    ) -> RepoResult:
        """Mirror one tag or digest of ``repo`` with its referrers."""
        cfg = self.config.registry(registry)
        dest = self._destination_or_failure(registry, repo)
        if isinstance(dest, RepoResult):
            return dest
        try:
            ref = Reference.parse(
                f"{repo}@{reference}" if ":" in reference else f"{repo}:{reference}"
            )
        except ContentError as exc:
            return self._failed(registry, repo, reference, exc)
        with self.coord.repo_lock(dest, blocking_timeout=lock_wait):
            job = self._job(cfg, repo, dest)
            if ref.tag is not None:
                job.run_single_tag(ref.tag)
            else:
                assert ref.digest is not None
                job.run_single_digest(ref.digest)
            return job.result

    def _job(self, cfg: RegistryConfig, repo: str, dest: str) -> RepoJob:
        images = ImageCopier(self.store, self._blobs, self._blob_pool, cfg.platforms)
        client = self.client(cfg.name)
        if cfg.sync_timeout is not None:  # zot's syncTimeout: one repository's deadline
            limit = cfg.sync_timeout.total_seconds()
            client = client.bounded(Deadline.after(limit, f"syncTimeout ({limit:g}s)"))
        return RepoJob(
            client=client,
            store=self.store,
            images=images,
            progress=self.progress,
            registry=cfg.name,
            repo=repo,
            dest=dest,
            only_signed=cfg.only_signed,
            oci_index_types=self.config.syncworker.layout_media_types == "oci",
        )

    def _destination_or_failure(self, registry: str, repo: str) -> str | RepoResult:
        try:
            dest = self.destination(registry, repo)
        except SyncworkerError as exc:
            return self._failed(registry, repo, None, exc)
        if dest is None:
            reason = "no content rule matches this repository"
            return self._failed(registry, repo, None, ContentError(reason))
        return dest

    def _failed(
        self, registry: str, repo: str, tag: str | None, exc: SyncworkerError
    ) -> RepoResult:
        result = RepoResult(registry, repo, None)
        failure = Failure(registry, repo, tag, str(exc))
        result.failures.append(failure)
        self.progress.failed(failure)
        return result
