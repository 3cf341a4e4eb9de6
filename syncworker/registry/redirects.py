"""The redirect layer: redirects followed by our policy, one response each.

Authorization never leaves its origin; a redirect to an address the upstream may not send
us to (:mod:`.addresses`) is refused, and one it may is pinned to the address judged
(:meth:`.pool.Pool.admit`); a streamed upload is never sent again (its body is spent),
and no body goes to another origin by 307/308 (a token request's form holds a login or a
refresh token: RFC 9110 section 15.4.8 has the body sent again as it is); 303, and 301/302
after a body, turn the request into a GET, as browsers and requests do.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urljoin

from syncworker.errors import RegistryError
from syncworker.redact import redact_http_url
from syncworker.registry.addresses import origin
from syncworker.registry.http import Handler, Request, Response
from syncworker.registry.requestlog import log

__all__ = ["MAX_REDIRECTS", "REDIRECT_STATUSES", "Redirects"]

# requests' own default; a chain longer than this is a loop or an attack.
MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class Redirects:
    """``admit(url, upstream)``: whether the client may connect to ``url`` on behalf of
    the upstream URL ``upstream`` (and pin it if so)."""

    def __init__(self, inner: Handler, admit: Callable[[str, str], bool]) -> None:
        self._inner = inner
        self._admit = admit

    def send(self, request: Request) -> Response:
        upstream = request.upstream or request.url
        for _ in range(MAX_REDIRECTS + 1):
            response = self._inner.send(request)
            location = response.headers.get("Location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response
            response.discard()
            target = urljoin(response.url, location)
            log.debug(
                "%s: %d, following to %s", request.what, response.status, redact_http_url(target)
            )
            request = self._follow(request, response.status, target, upstream)
        raise RegistryError(
            request.method, redact_http_url(request.url), 310, detail="too many redirects"
        )

    def _follow(self, request: Request, status: int, target: str, upstream: str) -> Request:
        if request.streamed and status in (307, 308):
            raise RegistryError(
                request.method,
                redact_http_url(request.url),
                status,
                detail="redirected a streamed upload, whose body cannot be sent again",
            )
        moved = origin(target) != origin(request.url)
        if request.body is not None and moved and status in (307, 308):
            _, host, port = origin(target)
            raise RegistryError(
                request.method,
                redact_http_url(request.url),
                status,
                detail=f"redirect to another host, {host}:{port}, refused: the request's body "
                "(a login, a refresh token) is sent only where it was addressed",
            )
        if not self._admit(target, upstream):
            raise RegistryError(
                request.method,
                redact_http_url(request.url),
                status,
                detail=f"redirect to {redact_http_url(target)} refused (internal address)",
            )
        headers = request.headers
        if moved:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        method, body = request.method, request.body
        if status == 303 or (status in (301, 302) and body):
            method, body = "GET", None
        return request.but(
            method=method, url=target, headers=headers, params=(), body=body, upstream=upstream
        )
