"""``GET /v2/_catalog``: the repositories of a registry, a page at a time."""

from __future__ import annotations

from collections.abc import Iterator

from syncworker.errors import MalformedResponseError
from syncworker.oci.document import load_json, str_list
from syncworker.registry import paths
from syncworker.registry.auth import CATALOG_SCOPE
from syncworker.registry.stack import Stack

__all__ = ["MAX_LIST_BYTES", "MAX_PAGE_SIZE", "catalog", "catalog_page", "string_list"]

# ECR (and others) answer an error for n > 1000; the spec lets registries cap n anyway.
MAX_PAGE_SIZE = 1000
# A page of 1000 names of at most 255 characters is ~300 KiB; tag lists of registries that
# ignore n can be larger. Anything past this is not a list we want to hold.
MAX_LIST_BYTES = 32 * 1024 * 1024


def catalog_page(t: Stack, last: str | None, n: int) -> tuple[list[str], str | None]:
    """One page: its names, and the ``last`` to ask for next (None at the end)."""
    params = [("n", str(max(1, min(n, MAX_PAGE_SIZE))))]
    if last:
        params.append(("last", last))
    reply = t.fetch("GET", "/v2/_catalog", scope=CATALOG_SCOPE, cap=MAX_LIST_BYTES, params=params)
    names = string_list(reply.body, "repositories")
    link = paths.link_next(reply.headers.get("Link"))
    if link is None or not names:
        return names, None
    return names, paths.link_query(link, "last") or names[-1]


def catalog(t: Stack) -> Iterator[str]:
    last: str | None = None
    while True:
        names, following = catalog_page(t, last, MAX_PAGE_SIZE)
        yield from names
        if following is None or following == last:
            return
        last = following


def string_list(body: bytes, key: str) -> list[str]:
    """``body[key]`` as a list of strings (``null`` counts as empty, as registries send it)."""
    what = f"{key} list"
    doc = load_json(body, what)
    if not isinstance(doc, dict):
        raise MalformedResponseError(f"{what} is not a JSON object")
    return str_list(doc, key, what)
