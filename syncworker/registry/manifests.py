"""``HEAD``/``GET /v2/<name>/manifests/<reference>``: descriptors and verified manifest bytes."""

from __future__ import annotations

from syncworker.errors import DigestMismatchError, SizeLimitError
from syncworker.oci import MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, Descriptor, Digest, Manifest
from syncworker.oci import parse_manifest as _parse
from syncworker.registry import answers, paths
from syncworker.registry.transport import Reply, Transport

__all__ = ["get_manifest", "head_manifest"]

_DIGEST_HEADER = "Docker-Content-Digest"


def head_manifest(t: Transport, repo: str, ref: str) -> Descriptor:
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


def get_manifest(t: Transport, repo: str, ref: str) -> tuple[bytes, Manifest]:
    """The manifest's exact bytes and what they refer to, verified and size-capped.

    Verified against ``ref`` when it is a digest, else against the digest header if sent.
    """
    ref = paths.reference(ref)

    def verified(reply: Reply) -> tuple[bytes, Manifest]:
        if ":" in ref:
            expected: Digest | None = Digest.parse(ref)
        else:
            header = reply.headers.get(_DIGEST_HEADER)
            expected = Digest.parse(header) if header else None
        try:
            manifest = _parse(reply.body, answers.media_type(reply.headers) or None, expected)
        except DigestMismatchError as exc:
            raise DigestMismatchError(f"manifest {repo}:{ref}: {exc}") from None
        return reply.body, manifest

    # Verified inside the retry loop: bytes altered on the way are fetched again.
    return t.fetch_checked(
        "GET",
        paths.repo_path(repo, "manifests", ref),
        verified,
        scope=paths.pull_scope(repo),
        cap=MAX_MANIFEST_BYTES,
        headers={"Accept": MANIFEST_ACCEPT},
    )
