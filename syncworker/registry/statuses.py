"""The status layer: an answer that is not 2xx becomes a :class:`RegistryError`.

Its error body is read with a cap (spec.md "Error Codes": the codes and the first message,
redacted); its ``Retry-After`` rides on the error for the retry above; a 404 is a
:class:`NotFoundError`. A 401 reaches this layer only once auth below could not answer it.
"""

from __future__ import annotations

from syncworker.errors import NotFoundError, RegistryError
from syncworker.redact import redact_http_url
from syncworker.registry.answers import spec_errors
from syncworker.registry.http import ERROR_BODY_CAP, Handler, Request, Response

__all__ = ["Statuses", "error_of"]


class Statuses:
    def __init__(self, inner: Handler) -> None:
        self._inner = inner

    def send(self, request: Request) -> Response:
        response = self._inner.send(request)
        if not 200 <= response.status < 300:
            with response:
                raise error_of(response)
        return response


def error_of(response: Response) -> RegistryError:
    """The error an answer stands for; reads (at most a capped part of) its body."""
    codes, detail = spec_errors(response.prefix(ERROR_BODY_CAP))
    kind = NotFoundError if response.status == 404 else RegistryError
    return kind(
        response.method,
        redact_http_url(response.url),
        response.status,
        codes,
        detail,
        response.retry_after,
    )
