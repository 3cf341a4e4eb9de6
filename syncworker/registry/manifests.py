"""``HEAD``/``GET /v2/<name>/manifests/<reference>``: descriptors and verified manifest bytes."""

from __future__ import annotations

from syncworker.errors import DigestMismatchError, SizeLimitError
from syncworker.oci import MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, Descriptor, Digest, Manifest
from syncworker.oci import parse_manifest as _parse
from syncworker.registry import answers, paths
from syncworker.registry.http import Response
from syncworker.registry.paid import Kept
from syncworker.registry.stack import Stack

__all__ = ["get_manifest", "head_manifest"]

_DIGEST_HEADER = "Docker-Content-Digest"


def head_manifest(t: Stack, repo: str, ref: str) -> Descriptor:
    """What ``ref`` points at, without the body; falls back to GET when headers are missing.

    spec.md "Checking if content exists": the digest header is a SHOULD, not a MUST.
    """
    ref = paths.reference(ref)
    reply = t.fetch(
        "HEAD",
        paths.repo_path(repo, "manifests", ref),
        scope=paths.pull_scope(repo),
        cap=0,
        headers={"Accept": MANIFEST_ACCEPT},
    )
    digest_text = reply.headers.get(_DIGEST_HEADER, "")
    length = answers.declared_length(reply.headers, f"HEAD manifest {repo}:{ref}")
    media_type = answers.media_type(reply.headers)
    if not digest_text or length is None or not media_type:
        return get_manifest(t, repo, ref)[1].descriptor()
    digest = Digest.parse(digest_text)
    if ":" in ref and digest != Digest.parse(ref):
        raise DigestMismatchError(f"{repo}@{ref}: registry reports digest {digest}")
    if length > MAX_MANIFEST_BYTES:
        raise SizeLimitError(
            f"manifest {repo}:{ref} of {length} bytes exceeds {MAX_MANIFEST_BYTES}"
        )
    return Descriptor(media_type, digest, length)


def get_manifest(t: Stack, repo: str, ref: str) -> tuple[bytes, Manifest]:
    """The manifest's exact bytes and what they refer to, verified and size-capped.

    Verified against ``ref`` when it is a digest, else against the digest header if sent.
    A manifest the upstream's pull budget was spent on lately is not fetched again
    (:mod:`.paid`).
    """
    ref = paths.reference(ref)
    kept = t.paid.find(repo, ref)
    if kept is not None:
        return kept.raw, _parse(kept.raw, kept.media_type, Digest.parse(ref))

    def verified(response: Response) -> None:
        expected = _expected(ref, response)
        if expected is not None:
            try:
                expected.verify(response.body)
            except DigestMismatchError as exc:
                raise DigestMismatchError(f"manifest {repo}:{ref}: {exc}") from None

    # Verified inside the retry: bytes altered on the way are fetched again.
    response = t.fetch(
        "GET",
        paths.repo_path(repo, "manifests", ref),
        scope=paths.pull_scope(repo),
        cap=MAX_MANIFEST_BYTES,
        headers={"Accept": MANIFEST_ACCEPT},
        check=verified,
    )
    media_type = answers.media_type(response.headers) or None
    manifest = _parse(response.body, media_type, _expected(ref, response))
    t.paid.keep(repo, str(manifest.digest), Kept(response.body, media_type))
    return response.body, manifest


def _expected(ref: str, response: Response) -> Digest | None:
    """What the manifest must hash to: ``ref`` when it is a digest, else the digest header
    if sent."""
    if ":" in ref:
        return Digest.parse(ref)
    header = response.headers.get(_DIGEST_HEADER)
    return Digest.parse(header) if header else None
