"""The registry client facade: one object per upstream, shared by every thread."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from types import TracebackType

from syncworker.errors import RegistryError
from syncworker.oci import Descriptor, Digest, Manifest
from syncworker.registry import blobs, catalog, manifests, referrers, tags
from syncworker.registry.authorizer import CredentialsArg
from syncworker.registry.deadline import Deadline
from syncworker.registry.gates import NO_GATES, Gates
from syncworker.registry.http import ERROR_BODY_CAP
from syncworker.registry.options import ClientOptions
from syncworker.registry.stack import Stack
from syncworker.registry.stats import ClientStats, RequestHook
from syncworker.retry import Retrying

__all__ = ["RegistryClient"]


class RegistryClient:
    """A distribution-spec client for one registry reachable at ``urls`` (failover order).

    ``gates``: the upstream's budgets (rate, bandwidth), shared with every other client
    of it (none: no limit, and no cost). Thread-safe. Auth, retries, failover, limits and
    redirects are layers of its HTTP stack (:mod:`.stack`); each method here is one
    protocol operation (see the module of the same name).
    """

    def __init__(
        self,
        urls: Sequence[str],
        credentials: CredentialsArg = None,
        options: ClientOptions = ClientOptions(),  # noqa: B008 - frozen, so shared safely
        *,
        gates: Gates = NO_GATES,
        hook: RequestHook | None = None,
    ) -> None:
        self.urls = tuple(urls)
        self.options = options
        self.stats = ClientStats(hook)
        self._t = Stack(self.urls, credentials, options, self.stats, gates=gates)
        # Learnt from the first answer: a registry without the referrers API (distribution
        # 2.x, most mirrors) is not asked again, which saves a request per image. A dict,
        # so that bounded views share what was learnt.
        self._learnt: dict[str, bool] = {}
        # Threads asking before the first answer wait for it instead of asking too.
        self._learning = threading.Lock()

    def bounded(self, deadline: Deadline) -> RegistryClient:
        """A view of this client (same connections, tokens, counters) for one job: every
        request, body and retry wait past ``deadline`` fails with DeadlineExceededError."""
        view = copy.copy(self)
        view._t = self._t.bounded(deadline)
        return view

    def ping(self) -> None:
        """``GET /v2/``: the registry speaks the protocol. A 401 counts as an answer."""
        try:
            self._t.fetch("GET", "/v2/", scope=None, cap=ERROR_BODY_CAP)
        except RegistryError as exc:
            if exc.status != 401:
                raise

    def catalog_page(self, last: str | None = None, n: int = 1000) -> tuple[list[str], str | None]:
        return catalog.catalog_page(self._t, last, n)

    def catalog(self) -> Iterator[str]:
        return catalog.catalog(self._t)

    def tags(self, repo: str) -> list[str]:
        return tags.tags(self._t, repo)

    def head_manifest(self, repo: str, ref: str) -> Descriptor:
        return manifests.head_manifest(self._t, repo, ref)

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, Manifest]:
        return manifests.get_manifest(self._t, repo, ref)

    @property
    def counts_pulls(self) -> bool:
        """Whether this upstream may count each manifest GET against a pull budget (Docker
        Hub): not yet shown to have none. A HEAD is free there."""
        return self._t.paid.counts_pulls

    def blob(self, repo: str, descriptor: Descriptor) -> AbstractContextManager[Iterable[bytes]]:
        return blobs.blob(self._t, repo, descriptor)

    def referrers(self, repo: str, digest: Digest) -> list[Descriptor]:
        """Through the API, else the tag schema (spec.md "Listing Referrers")."""
        found = self.referrers_api(repo, digest)
        return found if found is not None else referrers.referrers_tag_schema(self._t, repo, digest)

    def referrers_api(self, repo: str, digest: Digest) -> list[Descriptor] | None:
        """Through the API only; None if this registry has no referrers API. A caller
        that has the tag list finds the tag-schema fallback there, without a request."""
        if self._learnt.get("referrers_api") is False:
            return None
        if "referrers_api" in self._learnt:
            return self._ask_referrers_api(repo, digest)
        with self._learning:
            if "referrers_api" not in self._learnt:
                return self._ask_referrers_api(repo, digest)
        return self.referrers_api(repo, digest)

    def _ask_referrers_api(self, repo: str, digest: Digest) -> list[Descriptor] | None:
        found = referrers.referrers_api(self._t, repo, digest)
        self._learnt["referrers_api"] = found is not None
        return found

    @property
    def refetching(self) -> Retrying:
        """How a caller tries a whole stream from this client again (a blob copied into a
        store): this upstream's policy, under this view's deadline, counted as a retry."""
        return self._t.refetching

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RegistryClient({list(self.urls)!r})"
