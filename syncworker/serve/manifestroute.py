"""``GET``/``HEAD /v2/<name>/manifests/<reference>`` (spec.md "Pulling manifests").

``Content-Type`` is the media type of the stored bytes: the ``index.json`` entry's, or
under ``layoutMediaTypes: oci`` the one its annotation keeps (clients refuse a body whose
``mediaType`` differs from the header: CVE-2021-41190). A manifest the index does not list
(a child of an index) is typed by its own ``mediaType``.
"""

from __future__ import annotations

from syncworker.engine.plan import as_of_bytes
from syncworker.errors import InvalidNameError
from syncworker.oci import MAX_MANIFEST_BYTES, Digest, validate_tag
from syncworker.serve.apierrors import ApiError, manifest_unknown, name_unknown
from syncworker.serve.context import Served, parse_digest
from syncworker.serve.messages import Request, Response
from syncworker.store import IndexEntry

__all__ = ["get_manifest"]


def get_manifest(served: Served, request: Request, name: str, reference: str) -> Response:
    digest = _digest_of(reference)
    found = _lookup(served, name, reference, digest)
    if found is None and served.filler is not None and served.filler.maps(name):
        served.filler.fill_image(name, reference)
        found = _lookup(served, name, reference, digest)
    if found is None:
        raise manifest_unknown(name, reference)
    media_type, digest, size = found
    headers = {
        "Content-Type": media_type,
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
    }
    if request.method == "HEAD":
        return Response(200, headers, length=size)
    return Response(200, headers, served.store.read_blob(name, digest))


def _digest_of(reference: str) -> Digest | None:
    """The digest a reference names, None for a tag; a reference that is neither is
    MANIFEST_INVALID's cousin in distribution: an unknown manifest."""
    if ":" in reference:
        return parse_digest(reference)
    try:
        validate_tag(reference)
    except InvalidNameError:
        raise ApiError(400, "TAG_INVALID", "invalid tag", {"tag": reference[:200]}) from None
    return None


def _lookup(
    served: Served, name: str, reference: str, digest: Digest | None
) -> tuple[str, Digest, int] | None:
    """Media type, digest and stored size of the manifest, or None; NAME_UNKNOWN for a
    repository the store does not hold (and no filler could fill)."""
    entries = served.store.index(name)
    entry = _entry(entries, reference, digest)
    if entry is not None:
        desc = as_of_bytes(entry.descriptor)
        return desc.media_type, desc.digest, desc.size
    if digest is not None:
        unlisted = _unlisted(served, name, digest)
        if unlisted is not None:
            return unlisted
    if not entries and (served.filler is None or not served.filler.maps(name)):
        raise name_unknown(name)
    return None


def _entry(entries: list[IndexEntry], reference: str, digest: Digest | None) -> IndexEntry | None:
    if digest is None:
        return next((e for e in entries if e.tag == reference), None)
    return next((e for e in entries if e.descriptor.digest == digest), None)


def _unlisted(served: Served, name: str, digest: Digest) -> tuple[str, Digest, int] | None:
    """A manifest held but not listed in ``index.json`` (a child of an index on a store
    written by another tool): typed by its bytes. A blob too large to be a manifest is
    not read at all."""
    size = served.store.blob_size(name, digest)
    if size is None or size > MAX_MANIFEST_BYTES:
        return None
    parsed = served.manifest(name, digest)
    return None if parsed is None else (parsed.media_type, digest, size)
