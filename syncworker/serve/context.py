"""What every route reads: the store, how blobs leave it, and the on-demand filler.

Nothing here is state another replica would need: the store is the only truth, and what
a process keeps (parsed manifests, checked passwords) is a cache of content-addressed or
configured values.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from syncworker.config.syncextension import RegistryConfig
from syncworker.errors import ContentError, InvalidNameError, StoreError
from syncworker.oci import Digest, Manifest, parse_manifest, validate_repository
from syncworker.serve.apierrors import digest_invalid, name_invalid
from syncworker.serve.shared import Shared
from syncworker.store import Store
from syncworker.store.layout import check_repo_name
from syncworker.store.protocol import Readable, Servable

__all__ = ["Filler", "Served", "ServedStore", "parse_digest", "repository", "stored_names"]

# Parsed manifests kept per process (by digest, so never stale): referrers listings read
# every untagged manifest of a repository, each parsed once.
MANIFEST_CACHE_ENTRIES = 4096
# The store's repositories are listed again at most this often: every anonymous
# ``/v2/_catalog`` listing the store (on S3 a listing of the whole bucket) would let any
# client make the store work without end.
CATALOG_SECONDS = 5.0


@runtime_checkable
class ServedStore(Store, Readable, Servable, Protocol):
    """A store that can be served: an OCI layout store (filesystem or S3)."""

    def location(self) -> str:
        """Where the store is, for a person (never a secret)."""
        ...


class Filler(Protocol):
    """Pull-through: copy an image, or a subject's referrers, into the store before it is
    served; returns once it is there, or once the wait is over."""

    def fill_image(self, name: str, reference: str) -> None:
        """Raises ApiError 503 when the copy outlasts the wait or cannot start."""
        ...

    def fill_referrers(self, name: str, subject: Digest, artifact_type: str | None) -> None:
        """Never raises: a listing is answered from the store as it is."""
        ...

    def maps(self, name: str) -> bool:
        """Whether an on-demand registry's content rule maps destination ``name``."""
        ...

    def close(self) -> None:
        """Start no copy from here on, and stop waiting on those of others."""
        ...


@dataclass
class Served:
    """The registry being served. ``redirect_expiry``: seconds a presigned blob URL lives
    (None: blobs are streamed by this process)."""

    store: ServedStore
    redirect_expiry: int | None = None
    filler: Filler | None = None
    #: The store's name for a repository as a client asks for it (a Docker Hub mirror
    #: stores ``alpine`` as ``library/alpine``): :func:`stored_names`; as asked by default.
    names: Callable[[str], str] = field(default=lambda name: name)
    clock: Callable[[], float] = time.monotonic
    _catalog: Shared[list[str]] = field(init=False)
    _manifests: OrderedDict[Digest, Manifest] = field(default_factory=OrderedDict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._catalog = Shared(self.store.repositories, CATALOG_SECONDS, self.clock)

    def repositories(self) -> list[str]:
        """The store's repositories, sorted, as listed at most CATALOG_SECONDS ago."""
        return self._catalog.get()

    def close(self) -> None:
        """The server has stopped: pull-through starts nothing more."""
        if self.filler is not None:
            self.filler.close()

    def manifest(self, name: str, digest: Digest) -> Manifest | None:
        """The parsed manifest ``digest`` of ``name``; None if it is no manifest."""
        with self._guard:
            found = self._manifests.get(digest)
        if found is not None:
            return found
        try:
            parsed = parse_manifest(self.store.read_blob(name, digest), None, digest)
        except ContentError:
            return None
        with self._guard:
            self._manifests[digest] = parsed
            if len(self._manifests) > MANIFEST_CACHE_ENTRIES:
                self._manifests.popitem(last=False)
        return parsed


def stored_names(registries: list[RegistryConfig]) -> Callable[[str], str]:
    """The store's name for what a client asks for: the first registry entry (in
    configuration order) that stores it under another name decides, else the name asked.
    A docker daemon with ``registry-mirrors`` asks for ``library/alpine``, ``docker pull
    mirror:5000/alpine`` for ``alpine``: both read the one copy under ``library/alpine``."""

    def stored(name: str) -> str:
        for entry in registries:
            found = entry.stored_name(name)
            if found is not None:
                return found
        return name

    return stored


def repository(name: str) -> str:
    """``name`` if the spec's grammar and the store both accept it, else NAME_INVALID."""
    try:
        return check_repo_name(validate_repository(name))
    except (InvalidNameError, StoreError) as exc:
        raise name_invalid(name, str(exc)) from None


def parse_digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except ContentError:
        raise digest_invalid(text) from None
