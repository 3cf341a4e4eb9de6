"""The request log layer: at DEBUG (``-vv``), one line per request on the wire.

It sits next to the pool, so each attempt, redirect hop and token request is a line of its
own: the method, the URL with its secrets removed (:func:`~syncworker.redact.redact_http_url`
drops userinfo and every query value that is not plain data, so a presigned blob URL shows
no signature), the status, the body bytes read and the milliseconds from sending to
closing. Never a header. The layers that decide something about a request (a retry, a
redirect, an auth challenge, a rate-limit wait) log that decision on :data:`log` too.
"""

from __future__ import annotations

import logging
import time

from syncworker.errors import SyncworkerError
from syncworker.redact import redact_http_url
from syncworker.registry.http import Handler, Request, Response

__all__ = ["LOGGER", "RequestLog", "log"]

#: Every line about our HTTP requests, shown at ``-vv``.
LOGGER = "syncworker.http"
log = logging.getLogger(LOGGER)


class RequestLog:
    def __init__(self, inner: Handler) -> None:
        self._inner = inner

    def send(self, request: Request) -> Response:
        if not log.isEnabledFor(logging.DEBUG):
            return self._inner.send(request)
        started = time.monotonic()
        try:
            response = self._inner.send(request)
        except SyncworkerError as exc:
            log.debug("%s: %s after %d ms", request.what, exc, _ms(started))
            raise
        response.on_close(lambda: _line(response, started))
        return response


def _line(response: Response, started: float) -> None:
    log.debug(
        "%s %s: %d, %d bytes, %d ms",
        response.method,
        redact_http_url(response.url),
        response.status,
        response.received,
        _ms(started),
    )


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
