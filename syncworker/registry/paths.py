"""Endpoint paths of the distribution spec, built only from validated names.

A repository or reference that fails the spec's grammar never reaches a URL, so a hostile
catalog cannot steer requests (``..``, ``?``, ``#``) or our own store paths.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from syncworker.errors import ContentError
from syncworker.oci import Digest, validate_repository, validate_tag
from syncworker.registry.auth import repository_scope

__all__ = [
    "link_next",
    "link_path",
    "link_query",
    "pull_scope",
    "push_scope",
    "reference",
    "repo_path",
]


def repo_path(repo: str, *parts: str) -> str:
    """``/v2/<name>/<parts...>`` for a valid repository name."""
    return "/".join(["/v2", validate_repository(repo), *parts])


def reference(ref: str) -> str:
    """A manifest reference: a valid tag, or a digest of a supported algorithm."""
    if ":" in ref:
        return str(Digest.parse(ref))
    return validate_tag(ref)


def pull_scope(repo: str) -> str:
    return repository_scope(repo, "pull")


def push_scope(repo: str) -> str:
    return repository_scope(repo, "pull,push")


def link_next(header: str | None) -> str | None:
    """The ``rel="next"`` target of an RFC 8288 ``Link`` header (spec.md "Listing Tags")."""
    if not header:
        return None
    for part in header.split(","):
        target, _, rest = part.strip().partition(";")
        target = target.strip()
        if not (target.startswith("<") and target.endswith(">")):
            continue
        rels = [p.strip() for p in rest.split(";") if p.strip().lower().startswith("rel=")]
        if any("next" in r.partition("=")[2].strip("\"' ").lower().split() for r in rels):
            return target[1:-1]
    return None


def link_path(link: str) -> str:
    """Path and query of a Link target; the host is never taken from the upstream's text."""
    parts = urlsplit(link)
    if not parts.path.startswith("/v2/"):
        raise ContentError(f"pagination link outside /v2/: {parts.path[:200]!r}")
    return parts.path + (f"?{parts.query}" if parts.query else "")


def link_query(link: str, key: str) -> str | None:
    return dict(parse_qsl(urlsplit(link).query)).get(key)
