"""Referrers of a manifest: the referrers API, else the OCI tag schema.

spec.md "Listing Referrers": ``GET /v2/<name>/referrers/<digest>`` answers an image index
whose ``manifests`` are the referrers (possibly over several ``Link`` pages). A registry
without the API answers 404 (some 400/405); then the "referrers tag schema" applies: the
index is stored under the tag ``<alg>-<hex>``.
"""

from __future__ import annotations

from syncworker.errors import ContentError, MalformedResponseError, NotFoundError, RegistryError
from syncworker.oci import MAX_MANIFEST_BYTES, Descriptor, Digest
from syncworker.oci.document import load_json
from syncworker.oci.mediatypes import OCI_INDEX
from syncworker.registry import paths
from syncworker.registry.manifests import get_manifest, head_manifest
from syncworker.registry.stack import Stack

__all__ = ["fallback_tag", "referrers", "referrers_api", "referrers_tag_schema"]

# Statuses with which registries say "no referrers API here".
_NO_API_STATUSES = frozenset({400, 404, 405, 406})
# A registry with the API answers an unknown repository or subject with the spec's error
# codes; one without it answers its router's bare 404 ("404 page not found" in 2.x).
_GONE_CODES = frozenset({"NAME_UNKNOWN", "MANIFEST_UNKNOWN"})
# spec.md "Referrers Tag Schema": algorithm truncated to 32 characters, encoded to 64.
_ALG_MAX, _HEX_MAX = 32, 64
# A loop guard; a manifest with 100 pages of referrers is already absurd.
_MAX_PAGES = 100


def fallback_tag(digest: Digest) -> str:
    return f"{digest.algorithm[:_ALG_MAX]}-{digest.hex[:_HEX_MAX]}"


def referrers(t: Stack, repo: str, digest: Digest) -> list[Descriptor]:
    found = referrers_api(t, repo, digest)
    return found if found is not None else referrers_tag_schema(t, repo, digest)


def referrers_api(t: Stack, repo: str, digest: Digest) -> list[Descriptor] | None:
    """The referrers from the API, or None when the registry has no referrers API."""
    try:
        return _from_api(t, repo, digest)
    except RegistryError as exc:
        if exc.codes and set(exc.codes) <= _GONE_CODES:
            return []  # the API answered: this repository or manifest is gone
        if exc.status not in _NO_API_STATUSES:
            raise
        return None


def _from_api(t: Stack, repo: str, digest: Digest) -> list[Descriptor] | None:
    """The referrers from the API, or None if the answer is not an image index."""
    target = paths.repo_path(repo, "referrers", str(digest))
    found: list[Descriptor] = []
    for _ in range(_MAX_PAGES):
        reply = t.fetch(
            "GET",
            target,
            scope=paths.pull_scope(repo),
            cap=MAX_MANIFEST_BYTES,
            headers={"Accept": OCI_INDEX},
        )
        page = _index_entries(reply.body)
        if page is None:
            return None
        found += page
        link = paths.link_next(reply.headers.get("Link"))
        if link is None:
            return found
        target = paths.link_path(link)
    raise ContentError(f"referrers of {repo}@{digest}: more than {_MAX_PAGES} pages")


def _index_entries(body: bytes) -> list[Descriptor] | None:
    """The descriptors of a referrers index; None if the body is no image index at all
    (a registry without the API answering its own page)."""
    try:
        index = load_json(body, "referrers index")
    except MalformedResponseError:
        return None
    if not isinstance(index, dict) or index.get("schemaVersion") != 2:
        return None
    entries = index.get("manifests")
    if index.get("mediaType", OCI_INDEX) != OCI_INDEX or not isinstance(entries, list | None):
        return None
    return [Descriptor.from_json(entry) for entry in entries or []]


def referrers_tag_schema(t: Stack, repo: str, digest: Digest) -> list[Descriptor]:
    """The referrers listed under the fallback tag ``<alg>-<hex>``; [] if there is none.
    An upstream that may count pulls is asked with a free ``HEAD`` first: the tag is
    mostly absent, and its index, fetched by digest, is kept once paid for."""
    ref = fallback_tag(digest)
    try:
        if t.paid.counts_pulls:
            ref = str(head_manifest(t, repo, ref).digest)
        _, index = get_manifest(t, repo, ref)
    except NotFoundError:
        return []
    return list(index.children) if index.is_index else []
