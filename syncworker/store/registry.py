"""A :class:`~syncworker.store.protocol.Store` that is itself a registry: everything is pushed.

Store operations map to the distribution API (regclient's one scheme interface for a
registry and a layout is the model):

- ``has_blob``, ``has_manifest``: ``HEAD`` the blob, the manifest;
- ``link_blob``: a cross-repository mount; refused, it raises and the engine uploads;
- ``put_blob``: ``POST`` then one streamed ``PUT``, the digest verified on both ends;
- ``put_manifest``: ``PUT`` by digest, bytes unchanged, so a tag never precedes its tree;
- ``index``: the tag list, and one ``GET`` per tag (its digest, and an index's children);
- ``claim``: kept beside the registry, in Redis when one is shared, else in this process
  (:mod:`syncworker.store.claim` says why);
- ``update_index``: tags pushed last; a referrer listed untagged is added to its subject's
  referrers tag-schema index when the registry has no referrers API
  (:mod:`syncworker.store.referrerindex`).

Nothing is written beside the registry; an upload session a crash abandons is the
registry's to expire, and the next run opens a new one.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from syncworker.errors import (
    InvalidNameError,
    NotFoundError,
    RegistryError,
    StoreError,
    SyncworkerError,
    TransportError,
)
from syncworker.oci import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    Digest,
    parse_manifest,
    validate_repository,
    verifying,
)
from syncworker.registry import ClientOptions, Credentials
from syncworker.registry.pushclient import PushClient
from syncworker.store.claim import Source
from syncworker.store.memo import DIGESTS_KEPT, KeyedLocks, Recent
from syncworker.store.protocol import BlobHints, ClaimRecords, IndexEntry
from syncworker.store.referrerindex import list_referrer

__all__ = ["Destination", "MemoryClaims", "MemoryHints", "RegistryStore"]

# Tags read in parallel by ``index``: a no-op run's cost is one request per tag, and
# their latency, not their count, would otherwise dominate it.
INDEX_READERS = 8
# Manifests kept in memory per process (a few KiB each), for the tag pushed after its
# tree and for the index walks of the engine, which would otherwise GET them again.
MANIFEST_CACHE = 4096


@dataclass(frozen=True)
class Destination:
    """Where to push: the registry's base URL, its login and client options."""

    url: str
    credentials: Credentials | None = None
    options: ClientOptions = ClientOptions()  # noqa: RUF009 - frozen, so shared safely

    def connect(self) -> PushClient:
        """A client for it (nothing is sent yet)."""
        return PushClient([self.url], self.credentials, self.options)


class MemoryClaims:
    """This process's claims only: without Redis, a registry destination's claims hold for
    one ``syncworker sync`` run."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def claim_destination(self, registry: str, repo: str, source: str) -> str:
        with self._lock:
            return self._held.setdefault((registry, repo), source)

    def destination_claimant(self, registry: str, repo: str) -> str | None:
        return self._held.get((registry, repo))

    def release_destination(self, registry: str, repo: str, source: str) -> None:
        with self._lock:
            if self._held.get((registry, repo)) == source:
                del self._held[(registry, repo)]


class MemoryHints:
    """This process's hints only, the most recently used (a blob forgotten is uploaded
    again instead of mounted): enough for ``syncworker sync``."""

    def __init__(self) -> None:
        self._found: Recent[tuple[str, str], str] = Recent(DIGESTS_KEPT)

    def blob_hint(self, registry: str, digest: str) -> str | None:
        return self._found.get((registry, digest))

    def set_blob_hint(self, registry: str, digest: str, repo: str) -> None:
        self._found.put((registry, digest), repo)


class RegistryStore:
    """Pushes into the registry at ``destination``. Thread-safe."""

    spools_blobs = True
    keeps_annotations = False

    def __init__(
        self,
        destination: Destination,
        hints: BlobHints | None = None,
        claims: ClaimRecords | None = None,
    ) -> None:
        self.destination = destination
        self.client = destination.connect()
        self._hints = hints or MemoryHints()
        self._claims = claims or MemoryClaims()
        self._local = MemoryHints()
        self._guard = threading.Lock()
        self._repo_locks = KeyedLocks()
        self._manifests: OrderedDict[tuple[str, Digest], bytes] = OrderedDict()

    def __repr__(self) -> str:
        return f"RegistryStore({self.destination.url!r})"

    # -- blobs ----------------------------------------------------------------------------

    def has_blob(self, repo: str, digest: Digest) -> bool:
        with self._errors(repo):
            if self.client.head_blob(repo, digest) is None:
                return False
        self._remember(digest, repo)
        return True

    def has_manifest(self, repo: str, digest: Digest) -> bool:
        with self._errors(repo):
            try:
                self.client.head_manifest(repo, str(digest))
            except NotFoundError:
                return False
        return True

    def find_blob(self, digest: Digest) -> str | None:
        key = str(digest)
        found = self._local.blob_hint(self._host, key)
        if found is None:
            try:
                found = self._hints.blob_hint(self._host, key)
            except SyncworkerError:
                return None  # without a hint the blob is fetched: slower, still right
        return found

    def link_blob(self, src_repo: str, repo: str, digest: Digest) -> None:
        with self._errors(repo):
            source = self._name(src_repo)
            if not self.client.mount_blob(repo, digest, source):
                raise StoreError(
                    f"destination {self._host}: {repo}: mounting blob {digest} from"
                    f" {source} was refused (it lacks the blob, or we lack pull on it)"
                )
        self._remember(digest, repo)

    def blob_size(self, repo: str, digest: Digest) -> int | None:
        with self._errors(repo):
            return self.client.head_blob(repo, digest)

    @contextmanager
    def open_blob(self, repo: str, digest: Digest) -> Iterator[Iterable[bytes]]:
        """The blob as the registry serves it (the client verifies it as it streams: bytes
        that do not hash to ``digest`` raise DigestMismatchError at the end)."""
        size = self.blob_size(repo, digest)
        if size is None:
            raise StoreError(f"destination {self._host}: {repo}: blob {digest} is absent")
        with self._errors(repo):
            desc = Descriptor("application/octet-stream", digest, size)
            with self.client.blob(repo, desc) as body:
                yield body

    def put_blob(self, repo: str, digest: Digest, size: int | None, chunks: Iterable[bytes]) -> int:
        """Upload ``chunks``. A failure of ``chunks`` themselves (the upstream's stream
        broken or altered) is raised as it is: it is the source's, not the destination's."""
        source = _Source(verifying(chunks, digest, size))
        try:
            with self._errors(repo):
                sent = self.client.upload_blob(repo, digest, size, source)
        except StoreError as exc:
            if source.failure is not None and exc.__cause__ is source.failure:
                raise source.failure from None
            raise
        self._remember(digest, repo, uploaded=True)
        return sent

    def put_manifest(self, repo: str, digest: Digest, raw: bytes) -> None:
        manifest = parse_manifest(raw, None, digest)
        with self._errors(repo):
            self.client.put_manifest(repo, str(digest), raw, manifest.media_type)
        self._cache(repo, digest, raw)

    def read_blob(self, repo: str, digest: Digest) -> bytes:
        """A manifest (what the engine reads: from memory when this process pushed or
        listed it), else a blob of at most a manifest's size."""
        cached = self._manifests.get((repo, digest))
        if cached is not None:
            return cached
        with self._errors(repo):
            # Blob first: distribution answers a manifest GET for a blob's digest with 500.
            size = self.client.head_blob(repo, digest)
            if size is not None:
                return self._read_small_blob(repo, digest, size)
            try:
                raw, _ = self.client.get_manifest(repo, str(digest))
            except NotFoundError:
                raise StoreError(
                    f"destination {self._host}: {repo}: blob {digest} is absent"
                ) from None
        self._cache(repo, digest, raw)
        return raw

    # -- tags: the index ------------------------------------------------------------------

    def index(self, repo: str, tags: Collection[str] | None = None) -> list[IndexEntry]:
        """Every tag (or those of ``tags``) with the manifest it names, read in parallel,
        one GET each; the tag list is read only when no ``tags`` are given."""
        with self._errors(repo):
            try:
                tags = self.client.tags(repo) if tags is None else list(tags)
            except NotFoundError:
                return []
            with ThreadPoolExecutor(INDEX_READERS, thread_name_prefix="dest-index") as pool:
                found = list(pool.map(lambda tag: self._tagged(repo, tag), tags))
        return [entry for entry in found if entry is not None]

    def update_index(self, repo: str, entries: Sequence[IndexEntry]) -> bool:
        """Push each tag (its tree is already there); list each untagged referrer in its
        subject's tag-schema index where the registry has no referrers API."""
        changed = False
        with self._repo_locks.hold(repo), self._errors(repo):
            for entry in entries:
                if entry.tag is not None:
                    changed |= self._push_tag(repo, entry.tag, entry.descriptor.digest)
            for entry in entries:
                if entry.tag is None:
                    digest = entry.descriptor.digest
                    manifest = parse_manifest(self.read_blob(repo, digest), None, digest)
                    changed |= list_referrer(self.client, repo, manifest)
        return changed

    def remove_from_index(
        self, repo: str, tags: Collection[str], untagged: Collection[Digest]
    ) -> bool:
        """Refused: distribution 2.x deletes manifests by digest only, which would take
        every other tag of the same image with it."""
        raise StoreError(
            f"destination {self._host}: {repo}: prune is not supported when the destination"
            " is a registry (it cannot remove one tag alone); set prune: false"
        )

    def repositories(self) -> list[str]:
        """Repositories of the registry's catalog that hold at least one tag."""
        with self._errors(None):
            names = list(self.client.catalog())
            return sorted(name for name in names if self._has_tags(name))

    def close(self) -> None:
        self.client.close()

    def clean_leftovers(self, max_age: float | None = None) -> int:
        """Nothing to clean: an abandoned upload session is the registry's to expire."""
        return 0

    # -- the claim ------------------------------------------------------------------------

    def claim(self, repo: str, source: Source) -> Source:
        with self._errors(repo):
            return Source.parse(self._claims.claim_destination(self._host, repo, str(source)))

    def claimant(self, repo: str) -> Source | None:
        with self._errors(repo):
            held = self._claims.destination_claimant(self._host, repo)
        return None if held is None else Source.parse(held)

    def release_claim(self, repo: str, source: Source) -> None:
        with self._errors(repo):
            self._claims.release_destination(self._host, repo, str(source))

    # -- helpers --------------------------------------------------------------------------

    def _read_small_blob(self, repo: str, digest: Digest, size: int) -> bytes:
        if not 0 <= size <= MAX_MANIFEST_BYTES:
            raise StoreError(
                f"destination {self._host}: {repo}: blob {digest} of {size} bytes is too"
                " large to read whole"
            )
        with self.client.blob(repo, Descriptor("application/octet-stream", digest, size)) as body:
            return b"".join(body)

    def _tagged(self, repo: str, tag: str) -> IndexEntry | None:
        try:
            raw, manifest = self.client.get_manifest(repo, tag)
        except (NotFoundError, InvalidNameError):
            return None  # deleted meanwhile, or a name we never write
        if manifest.is_index:
            self._cache(repo, manifest.digest, raw)
        return IndexEntry(manifest.descriptor(), tag)

    def _push_tag(self, repo: str, tag: str, digest: Digest) -> bool:
        try:
            if self.client.head_manifest(repo, tag).digest == digest:
                return False
        except NotFoundError:
            pass
        raw = self.read_blob(repo, digest)
        self.client.put_manifest(repo, tag, raw, parse_manifest(raw, None, digest).media_type)
        return True

    def _has_tags(self, repo: str) -> bool:
        try:
            return bool(self.client.tags(repo))
        except NotFoundError:
            return False

    def _remember(self, digest: Digest, repo: str, *, uploaded: bool = False) -> None:
        """Note where ``digest`` lives, here and for other processes. An upload replaces a
        hint (the one it had may have been stale). A lost hint costs at most a download:
        errors writing it do not fail a copy."""
        key = str(digest)
        if uploaded or self._local.blob_hint(self._host, key) is None:
            self._local.set_blob_hint(self._host, key, repo)
            with contextlib.suppress(SyncworkerError):
                self._hints.set_blob_hint(self._host, key, repo)

    def _cache(self, repo: str, digest: Digest, raw: bytes) -> None:
        with self._guard:
            self._manifests[repo, digest] = raw
            self._manifests.move_to_end((repo, digest))
            while len(self._manifests) > MANIFEST_CACHE:
                self._manifests.popitem(last=False)

    def _name(self, repo: str) -> str:
        try:
            return validate_repository(repo)
        except InvalidNameError as exc:
            raise StoreError(f"destination {self._host}: {exc}") from None

    @property
    def _host(self) -> str:
        return self.destination.url.split("://", 1)[-1]

    @contextmanager
    def _errors(self, repo: str | None) -> Iterator[None]:
        """Refuse invalid names before any request; name the destination in its errors
        (caused by the client's error, so that ``retry.classify`` judges them alike)."""
        if repo is not None:
            self._name(repo)
        try:
            yield
        except (RegistryError, TransportError) as exc:
            raise StoreError(f"destination {self._host}: {exc}") from exc


class _Source:
    """The chunks of an upload, keeping their own failure."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.failure: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._chunks
        except BaseException as exc:
            self.failure = exc
            raise
