"""The wire under one upstream: keep-alive pools, redirects by our policy, the rate limit.

:class:`Sender` sends one request and follows its redirects (Authorization never leaves its
origin; redirects and token realms on internal addresses are refused unless the upstream
is itself internal, and connections are pinned to the address judged), asking the
upstream's limiter (``limits``) before each request to the upstream's own URLs. The
transport above it does auth, retries and failover.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import urljoin

import requests

from syncworker.errors import RegistryError
from syncworker.redact import redact_http_url
from syncworker.registry import redirects
from syncworker.registry.deadline import Deadline
from syncworker.registry.limits import Limiter, limited
from syncworker.registry.options import ClientOptions
from syncworker.registry.pinning import PinningAdapter, Pins
from syncworker.registry.stats import ClientStats
from syncworker.registry.wire import (
    SEND_ERRORS,
    Answer,
    discard,
    make_session,
    prepared_plainly,
    send_prepared,
    timed_out,
    transport_error,
)

__all__ = ["POOL_HOSTS", "Body", "Params", "Sender", "spent"]

# Hosts whose pools are kept: the upstream's URLs plus a redirect target or two.
POOL_HOSTS = 8
Params = Sequence[tuple[str, str]]
#: A request body: bytes (resent as needed), or chunks streamed once (an upload).
Body = bytes | Iterable[bytes] | None


class Sender:
    """Thread-safe: one keep-alive pool shared by all threads (urllib3's pools are), a
    ``requests.Session`` per thread on top of it, as requests does not promise a shared
    Session is."""

    def __init__(
        self,
        origins: frozenset[tuple[str, str, int]],
        options: ClientOptions,
        stats: ClientStats,
        limiter: Limiter | None,
        sleep: Callable[[float], None],
    ) -> None:
        self._origins = origins
        self._options = options
        self._stats = stats
        self._limiter = limiter
        self._sleep = sleep
        self._pins = Pins()
        self._adapter = PinningAdapter(
            self._pins, pool_connections=POOL_HOSTS, pool_maxsize=options.pool_size, max_retries=0
        )
        self._local = threading.local()
        self._upstream_addresses: dict[str, list[redirects.IPAddress]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._adapter.close()

    @property
    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = make_session(self._options, self._adapter)
            self._local.session = session
        return session

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Params | None,
        data: Body,
        upstream_url: str,
        deadline: Deadline | None,
    ) -> Answer:
        """Send, following redirects by our policy; Authorization never leaves its origin.

        ``upstream_url`` is the registry URL the request is made for: whether it is itself
        an internal address decides where its redirects may lead."""
        upstream = self.addresses_of(upstream_url)
        current = dict(headers)
        for _ in range(redirects.MAX_REDIRECTS + 1):
            response = self._send_once(method, url, current, params, data, deadline)
            location = response.headers.get("Location")
            if response.status not in redirects.REDIRECT_STATUSES or not location:
                return response
            discard(response)
            target = urljoin(response.url, location)
            if spent(data) and response.status in (307, 308):
                raise RegistryError(
                    method,
                    redact_http_url(url),
                    response.status,
                    detail="redirected a streamed upload, whose body cannot be sent again",
                )
            if not self.admit(target, upstream):
                raise RegistryError(
                    method,
                    redact_http_url(url),
                    response.status,
                    detail=f"redirect to {redact_http_url(target)} refused (internal address)",
                )
            if redirects.origin(target) != redirects.origin(url):
                current.pop("Authorization", None)
            if response.status == 303 or (response.status in (301, 302) and data):
                method, data = "GET", None
            url, params = target, None
        raise RegistryError(method, redact_http_url(url), 310, detail="too many redirects")

    def _send_once(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Params | None,
        data: Body,
        deadline: Deadline | None,
    ) -> Answer:
        timeout = self._options.timeout
        if deadline is not None:
            deadline.check(f"{method} {redact_http_url(url)}")
            timeout = min(timeout, deadline.remaining())
        if self._limiter is None or redirects.origin(url) not in self._origins:
            return self._request(method, url, headers, params, data, timeout)
        send = functools.partial(self._request, method, url, headers, params, data, timeout)
        what = f"{method} {redact_http_url(url)}"
        return limited(self._limiter, send, sleep=self._wait, deadline=deadline, what=what)

    def _wait(self, seconds: float) -> None:
        """Sleep out the rate limit, telling the hook how long it held us back."""
        if self._stats.hook is not None:
            self._stats.hook.waited(seconds)
        self._sleep(seconds)

    def _request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Params | None,
        data: Body,
        timeout: float,
    ) -> Answer:
        self._stats.add(requests=1)
        hook = self._stats.hook
        session = self._session
        plain = data is None and not params
        prepared = prepared_plainly(session, method, url, headers) if plain else None
        try:
            if prepared is not None:
                answer = send_prepared(session, self._adapter, prepared, timeout)
            else:
                response = session.request(
                    method,
                    url,
                    headers=dict(headers),
                    params=list(params or ()),
                    data=data,
                    stream=True,
                    allow_redirects=False,
                    timeout=(timeout, timeout),
                )
                answer = Answer(method, response.url, response.raw, response.headers)
        except SEND_ERRORS as exc:
            if hook is not None:
                hook.response(method, "timeout" if timed_out(exc) else "error")
            raise transport_error(method, url, exc) from None
        if hook is not None:
            hook.response(method, str(answer.status))
        return answer

    def admit(self, url: str, upstream: list[redirects.IPAddress]) -> bool:
        """Whether ``url`` (a redirect target, a token realm) may be connected to; if it
        may, its connections are pinned to the address judged. The registry's own URLs
        are the user's choice and always may."""
        key = redirects.origin(url)
        if key in self._origins:
            return True
        addresses = redirects.resolve(key[1])
        if not redirects.target_allowed(url, upstream, addresses):
            return False
        self._pins.pin(key[1], str(addresses[0]))
        return True

    def addresses_of(self, url: str) -> list[redirects.IPAddress]:
        host = redirects.origin(url)[1]
        with self._lock:
            cached = self._upstream_addresses.get(host)
        if cached is None:
            cached = redirects.resolve(host)
            with self._lock:
                self._upstream_addresses[host] = cached
        return cached


def spent(data: Body) -> bool:
    """Whether ``data`` was a stream, consumed by the request that carried it."""
    return data is not None and not isinstance(data, bytes)
