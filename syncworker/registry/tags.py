"""``GET /v2/<name>/tags/list``: every tag of a repository, following ``Link`` pages."""

from __future__ import annotations

from syncworker.errors import ContentError, SizeLimitError
from syncworker.registry import paths
from syncworker.registry.catalog import MAX_LIST_BYTES, MAX_PAGE_SIZE, string_list
from syncworker.registry.stack import Stack

__all__ = ["tags"]

# A loop guard: 10,000 pages of 1000 tags is more than any real repository holds.
MAX_PAGES = 10_000
# Memory guard across pages: each page is capped, the whole list is too (about a million
# tags of typical length).
MAX_TOTAL_BYTES = 4 * MAX_LIST_BYTES


def tags(t: Stack, repo: str, page_size: int = MAX_PAGE_SIZE) -> list[str]:
    """All tags of ``repo`` (names as sent: the engine validates each one it uses)."""
    target = paths.repo_path(repo, "tags", "list")
    params: list[tuple[str, str]] = [("n", str(max(1, min(page_size, MAX_PAGE_SIZE))))]
    found: list[str] = []
    seen: set[str] = set()
    total = 0
    for _ in range(MAX_PAGES):
        reply = t.fetch(
            "GET", target, scope=paths.pull_scope(repo), cap=MAX_LIST_BYTES, params=params
        )
        total += len(reply.body)
        if total > MAX_TOTAL_BYTES:
            raise SizeLimitError(f"tags of {repo}: more than {MAX_TOTAL_BYTES} bytes of lists")
        found += string_list(reply.body, "tags")
        link = paths.link_next(reply.headers.get("Link"))
        if link is None:
            return found
        target, params = paths.link_path(link), []
        if target in seen:
            raise ContentError(f"tags of {repo}: pagination loops at {target[:200]!r}")
        seen.add(target)
    raise ContentError(f"tags of {repo}: more than {MAX_PAGES} pages")
