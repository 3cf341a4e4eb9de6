"""``n``/``last`` pagination of tag and repository lists, with the ``Link`` header to the
next page (spec.md "Listing Tags"; distribution's catalog pagination)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

from syncworker.serve.apierrors import pagination_invalid
from syncworker.serve.messages import Request

__all__ = ["MAX_PAGE", "page"]

# distribution's catalog default (registry/handlers/catalog.go maximumReturnedEntries):
# the most entries one answer holds, whatever ``n`` asks for.
MAX_PAGE = 1000


def page(
    request: Request, items: Sequence[str], default: int | None
) -> tuple[list[str], dict[str, str]]:
    """The sorted ``items`` after ``last``, at most ``n`` (``default`` when absent, None:
    all of them, capped at MAX_PAGE), and the ``Link`` header when more remain."""
    n_text, last = request.param("n"), request.param("last")
    limit = default if n_text is None else _number(n_text)
    limit = MAX_PAGE if limit is None else min(limit, MAX_PAGE)
    after = [item for item in sorted(items) if last is None or item > last]
    shown = after[:limit]
    if len(after) <= limit or not shown:
        return shown, {}
    query = urlencode({"n": limit, "last": shown[-1]})
    return shown, {"Link": f'<{request.path}?{query}>; rel="next"'}


def _number(text: str) -> int:
    if not text.isdigit():
        raise pagination_invalid(text[:40])
    return int(text)
