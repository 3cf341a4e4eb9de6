"""``GET /v2/<name>/tags/list`` (spec.md "Listing Tags")."""

from __future__ import annotations

from syncworker.serve.apierrors import name_unknown
from syncworker.serve.context import Served
from syncworker.serve.messages import Request, Response, json_response
from syncworker.serve.pages import page

__all__ = ["list_tags"]


def list_tags(served: Served, request: Request, name: str) -> Response:
    entries = served.store.index(name)
    if not entries:
        raise name_unknown(name)
    tags = sorted({e.tag for e in entries if e.tag is not None})
    shown, headers = page(request, tags, None)
    return json_response({"name": name, "tags": shown}, headers=headers)
