"""``GET /v2/_catalog`` (distribution's catalog API, kept by the OCI spec as an extension):
every repository of the store with an ``index.json``, as listed a few seconds ago at most
(``Served.repositories``), a page of it by ``n`` and ``last``."""

from __future__ import annotations

from syncworker.serve.context import Served
from syncworker.serve.messages import Request, Response, json_response
from syncworker.serve.pages import page

__all__ = ["DEFAULT_PAGE", "list_repositories"]

# distribution's default page of the catalog when ``n`` is absent.
DEFAULT_PAGE = 100


def list_repositories(served: Served, request: Request) -> Response:
    shown, headers = page(request, served.repositories(), DEFAULT_PAGE)
    return json_response({"repositories": shown}, headers=headers)
