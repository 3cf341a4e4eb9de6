"""HTTP for one upstream: auth, retries, failover, error translation, over :mod:`.sender`.

The protocol modules (catalog, tags, manifests, blobs, ...) only say which path they want
and what scope it needs; everything in between lives here and in :mod:`.sender`, stacked as
in go-containerregistry's transport: failover (outermost) → retry with backoff → auth
challenge/response → redirect policy → the upstream's rate limit (``limits``, when one is
configured) → one request on urllib3's pool (:mod:`.wire`). Error statuses become
:class:`RegistryError` / :class:`NotFoundError` here; exceptions of the HTTP libraries
become :class:`TransportError` in :mod:`.wire`.

A streamed body (:meth:`Transport.open`) is opened with one attempt per URL: its caller
retries the whole stream (``retry.retrying``), so retries never nest.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import urllib3

from syncworker.errors import (
    NotFoundError,
    RegistryError,
    SizeLimitError,
    SyncworkerError,
)
from syncworker.redact import redact_http_url
from syncworker.registry import answers, auth, redirects
from syncworker.registry.authorizer import Authorizer, CredentialsArg, logins_by_origin
from syncworker.registry.deadline import Deadline
from syncworker.registry.limits import Limiter, pause_for
from syncworker.registry.options import ClientOptions
from syncworker.registry.sender import Body, Params, Sender, spent
from syncworker.registry.stats import ClientStats
from syncworker.registry.wire import (
    BODY_ERRORS,
    ERROR_BODY_CAP,
    READ_CHUNK,
    Answer,
    read_prefix,
    transport_error,
)
from syncworker.retry import REQUESTS, Retrying, classify, parse_retry_after

__all__ = ["Reply", "Transport"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class Reply:
    """A fully read answer: status, headers, body and the final (unredacted) URL."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


class Transport:
    """Sends requests to a registry reachable at one or more equivalent base URLs.

    Thread-safe: the sender's pools, the token cache and the learned challenges are shared
    by every thread; the per-request state lives on the stack.
    """

    def __init__(
        self,
        urls: Sequence[str],
        credentials: CredentialsArg,
        options: ClientOptions,
        stats: ClientStats,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        limiter: Limiter | None = None,
    ) -> None:
        if not urls:
            raise ValueError("a registry needs at least one URL")
        self._bases = [u.rstrip("/") for u in urls]
        self._options = options
        self._stats = stats
        self._sleep, self._rng, self._clock = sleep, rng or random.Random(), clock
        if not options.tls_verify:
            # The user asked for no verification (zot's tlsVerify: false); not a warning
            # per request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._preferred = 0
        self._origins = frozenset(redirects.origin(u) for u in self._bases)
        logins = logins_by_origin(self._bases, credentials)
        self._auth = Authorizer(self._bases, logins, self._token_body, clock)
        self._lock = threading.Lock()
        self._deadline: Deadline | None = None
        self._limiter = limiter
        self._wire = Sender(self._origins, options, stats, limiter, sleep)

    def bounded(self, deadline: Deadline) -> Transport:
        """This transport (same pool, tokens, counters) with every request, body and retry
        wait after ``deadline`` failing with :class:`DeadlineExceededError`."""
        view = copy.copy(self)
        view._deadline = deadline
        return view

    @property
    def stats(self) -> ClientStats:
        return self._stats

    @property
    def options(self) -> ClientOptions:
        return self._options

    def close(self) -> None:
        self._wire.close()

    # -- the public surface used by the protocol modules ---------------------------------

    def fetch(
        self,
        method: str,
        target: str,
        *,
        scope: str | None,
        cap: int,
        params: Params = (),
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> Reply:
        """Send and read the whole body (at most ``cap`` bytes) inside the retry loop."""
        return self.fetch_checked(
            method, target, _as_is, scope=scope, cap=cap, params=params, headers=headers, data=data
        )

    def fetch_checked(
        self,
        method: str,
        target: str,
        check: Callable[[Reply], _T],
        *,
        scope: str | None,
        cap: int,
        params: Params = (),
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> _T:
        """:meth:`fetch`, with ``check(reply)`` run inside the retry loop: bytes it finds
        altered (:class:`DigestMismatchError`) are fetched again like a temporary error."""

        def attempt(url: str) -> _T:
            response = self._exchange(method, url, scope, params, headers, data)
            with response:
                # Read even a HEAD's empty body: only a consumed response gives its
                # connection back to the pool (closing an unread one drops it).
                body = self.read(response, cap, method)
            return check(Reply(response.status, response.headers, body, response.url))

        return self._failover(target, lambda url: self._retrying(lambda: attempt(url)))

    def open(
        self,
        method: str,
        target: str,
        *,
        scope: str | None,
        params: Params = (),
        headers: Mapping[str, str] | None = None,
        data: Body = None,
    ) -> Answer:
        """Send and return the response unread, for streaming. The caller closes it.

        One attempt per URL: the caller retries the whole stream, not this request. A
        streamed ``data`` is sent once; its caller authorises ``scope`` beforehand."""
        return self._failover(
            target, lambda url: self._exchange(method, url, scope, params, headers, data)
        )

    def iter_body(self, response: Answer, chunk_size: int) -> Iterator[bytes]:
        """The body's chunks; a broken connection mid-body becomes :class:`TransportError`.

        Each read returns what one ``recv`` brings (``read1``), so the deadline is checked
        between reads even when a server sends one byte every few seconds."""
        method = response.method
        try:
            while True:
                if self._deadline is not None:
                    self._deadline.check(f"{method} {redact_http_url(response.url)}")
                chunk = response.read1(chunk_size)
                if not chunk:
                    return
                self._stats.add(bytes_downloaded=len(chunk))
                yield chunk
        except BODY_ERRORS as exc:
            raise transport_error(method, response.url, exc) from None

    def read(self, response: Answer, cap: int, method: str = "GET") -> bytes:
        """The whole body, refusing (before buffering it) one longer than ``cap``."""
        # A HEAD's Content-Length is the size of the GET's body, not of this (empty) one.
        declared = None
        if method != "HEAD" and "Content-Length" in response.headers:
            declared = answers.declared_length(response.headers, _where(method, response))
        if declared is not None and declared > cap:
            raise SizeLimitError(
                f"{_where(method, response)}: body of {declared} bytes exceeds {cap}"
            )
        parts: list[bytes] = []
        total = 0
        for chunk in self.iter_body(response, READ_CHUNK):
            total += len(chunk)
            if total > cap:
                raise SizeLimitError(f"{_where(method, response)}: body exceeds {cap} bytes")
            parts.append(chunk)
        return b"".join(parts)

    # -- failover and retries ------------------------------------------------------------

    def _failover(self, target: str, call: Callable[[str], _T]) -> _T:
        """Try each base URL in turn (the last one that worked first) on temporary errors.

        An absolute ``target`` (an upload Location) belongs to one host: no failover.
        """
        if "://" in target:
            return call(target)
        with self._lock:
            first = self._preferred
        order = [first] + [i for i in range(len(self._bases)) if i != first]
        failure: SyncworkerError | None = None
        for index in order:
            try:
                result = call(self._bases[index] + target)
            except SyncworkerError as exc:
                if not classify(exc):
                    raise
                failure = exc
                continue
            with self._lock:
                self._preferred = index
            return result
        assert failure is not None
        raise failure

    @property
    def refetching(self) -> Retrying:
        """This upstream's retry policy under this view's deadline, each retry counted."""
        policy = REQUESTS.but(retries=self._options.max_retries, base=self._options.retry_delay)
        return Retrying(policy, self._deadline, self._retried)

    def _retrying(self, call: Callable[[], _T]) -> _T:
        return self.refetching.run(call, sleep=self._sleep, jitter=self._rng.random)

    def _retried(self) -> None:
        self._stats.add(retries=1)
        if self._stats.hook is not None:
            self._stats.hook.retried()

    # -- one attempt: auth challenge/response around a send --------------------------------

    def _exchange(
        self,
        method: str,
        url: str,
        scope: str | None,
        params: Params,
        headers: Mapping[str, str] | None,
        data: Body,
    ) -> Answer:
        """One authorised request; any non-2xx answer is raised as a :class:`RegistryError`."""
        sent = self._auth.header(url, scope)
        response = self._wire.send(
            method, url, _with_auth(headers, sent), params, data, url, self._deadline
        )
        # A 401 from a redirect target (blob storage, a CDN) is its own business: our
        # credentials, and a realm it names, are never offered to it.
        if response.status == 401 and redirects.origin(response.url) == redirects.origin(url):
            # Read the 401 first: its connection is then free for the token request.
            with response:
                refused = self._error(method, response)
            challenge = response.headers.get("WWW-Authenticate", "")
            # A streamed body is spent: it cannot be sent again with the new credentials.
            if not self._auth.learn(url, challenge, sent, scope) or spent(data):
                raise refused
            renewed = self._auth.header(url, scope)
            if renewed is None or renewed == sent:
                raise refused
            response = self._wire.send(
                method, url, _with_auth(headers, renewed), params, data, url, self._deadline
            )
        if not 200 <= response.status < 300:
            with response:
                raise self._error(method, response)
        return response

    def _token_body(
        self,
        realm: str,
        headers: Mapping[str, str],
        params: Sequence[tuple[str, str]],
        upstream: str,
    ) -> bytes:
        if not self._wire.admit(realm, self._wire.addresses_of(upstream)):
            raise RegistryError(
                "GET",
                redact_http_url(realm),
                401,
                detail="token realm refused (internal or link-local address)",
            )
        response = self._wire.send("GET", realm, headers, params, None, upstream, self._deadline)
        with response:
            if not 200 <= response.status < 300:
                raise self._error("GET", response)
            return self.read(response, auth.MAX_TOKEN_RESPONSE_BYTES)

    # -- the wire: redirects and exception translation -----------------------------------

    def _error(self, method: str, response: Answer) -> RegistryError:
        try:
            body = read_prefix(response, ERROR_BODY_CAP)
        except BODY_ERRORS:
            body = b""
        codes, detail = answers.spec_errors(body)
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock())
        retry_after = self._paused(response, retry_after)
        kind = NotFoundError if response.status == 404 else RegistryError
        return kind(
            method, redact_http_url(response.url), response.status, codes, detail, retry_after
        )

    def _paused(self, response: Answer, retry_after: float | None) -> float | None:
        if self._limiter is None or redirects.origin(response.url) not in self._origins:
            return retry_after
        return pause_for(self._limiter, response.status, retry_after)


def _where(method: str, response: Answer) -> str:
    return f"{method} {redact_http_url(response.url)}"


def _as_is(reply: Reply) -> Reply:
    return reply


def _with_auth(headers: Mapping[str, str] | None, authorization: str | None) -> dict[str, str]:
    out = dict(headers or {})
    if authorization is not None:
        out["Authorization"] = authorization
    return out
