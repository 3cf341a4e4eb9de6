"""Pushing to a registry: blobs (checked, mounted, or streamed up) and manifests.

spec.md "Pushing blobs": ``POST /v2/<name>/blobs/uploads/`` opens an upload session, then
one ``PUT <Location>?digest=<digest>`` carries the whole body ("POST then PUT"), streamed
from the iterable it is given, never held in memory. ``?mount=<digest>&from=<repo>`` asks
for a cross-repository mount instead: ``201`` means done, ``202`` means the registry
refused and opened an ordinary session, which is then cancelled. spec.md "Pushing
Manifests": ``PUT /v2/<name>/manifests/<reference>`` with the bytes as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from syncworker.errors import (
    DigestMismatchError,
    MalformedResponseError,
    RegistryError,
    SyncworkerError,
)
from syncworker.oci import Digest, validate_repository
from syncworker.redact import redact_http_url
from syncworker.registry import answers, paths
from syncworker.registry.auth import repository_scope
from syncworker.registry.http import ERROR_BODY_CAP, Response
from syncworker.registry.stack import Stack

__all__ = ["delete_upload", "head_blob", "mount_blob", "put_manifest", "upload_blob"]

_DIGEST_HEADER = "Docker-Content-Digest"
#: distribution-spec "Pushing Manifests with Subject": a registry that indexed the subject
#: for its referrers API says so with this header; without it the client keeps the
#: referrers tag schema up to date.
SUBJECT_HEADER = "OCI-Subject"


def head_blob(t: Stack, repo: str, digest: Digest) -> int | None:
    """``HEAD /v2/<name>/blobs/<digest>``: the size of the blob ``repo`` holds, or None.
    Only a 404 means absent; any other error is raised."""
    target = paths.repo_path(repo, "blobs", str(digest))
    try:
        reply = t.fetch("HEAD", target, scope=_pull(repo), cap=0)
    except RegistryError as exc:
        if exc.status == 404:
            return None
        raise
    size = answers.declared_length(reply.headers, f"HEAD blob {repo}@{digest}")
    return -1 if size is None else size


def mount_blob(t: Stack, repo: str, digest: Digest, source: str) -> bool:
    """Mount ``digest`` from ``source`` into ``repo``; False if the registry refused (it
    answered with an upload session, cancelled here)."""
    reply = t.fetch(
        "POST",
        paths.repo_path(repo, "blobs", "uploads") + "/",
        # token.md: the mount needs push on the target and pull on the source.
        scope=f"{paths.push_scope(repo)} {_pull(validate_repository(source))}",
        cap=ERROR_BODY_CAP,
        params=[("mount", str(digest)), ("from", source)],
    )
    if reply.status == 201:
        return True
    delete_upload(t, repo, _location(reply))
    return False


def upload_blob(
    t: Stack, repo: str, digest: Digest, size: int | None, chunks: Iterable[bytes]
) -> int:
    """Stream ``chunks`` into ``repo`` as ``digest``; return the bytes sent.

    The registry verifies the digest before it makes the blob visible; ``chunks`` should
    verify it too (a :class:`~syncworker.oci.VerifyingReader`), so that a bad stream is
    cut short and never completed. An error raised by ``chunks`` itself is raised as it
    is, not as the stack's failure to send it.
    """
    start = t.fetch(
        "POST",
        paths.repo_path(repo, "blobs", "uploads") + "/",
        scope=paths.push_scope(repo),
        cap=ERROR_BODY_CAP,
    )
    body = _Body(chunks)
    session = _location(start)
    try:
        response = t.open(
            "PUT",
            _with_query(session, digest=str(digest)),
            scope=paths.push_scope(repo),
            headers=_upload_headers(size),
            data=b"" if size == 0 else body,
        )
    except Exception:
        # The session is left to the registry to expire: a cut upload moved its state on,
        # so distribution refuses to cancel it with the Location we hold.
        if body.failure is not None:
            raise body.failure from None
        raise
    response.discard()
    _check_digest(response.headers.get(_DIGEST_HEADER), digest, f"blob {repo}@{digest}")
    return body.sent


def delete_upload(t: Stack, repo: str, location: str) -> None:
    """Cancel an upload session (spec.md "Canceling an upload"); the registry expires
    abandoned ones anyway, so a failure here is ignored."""
    with contextlib.suppress(SyncworkerError):
        t.fetch("DELETE", location, scope=paths.push_scope(repo), cap=ERROR_BODY_CAP)


def put_manifest(t: Stack, repo: str, ref: str, raw: bytes, media_type: str) -> Response:
    """``PUT`` manifest bytes unchanged under a tag or their digest."""
    ref = paths.reference(ref)
    reply = t.fetch(
        "PUT",
        paths.repo_path(repo, "manifests", ref),
        scope=paths.push_scope(repo),
        cap=ERROR_BODY_CAP,
        headers={"Content-Type": media_type},
        data=raw,
    )
    _check_digest(reply.headers.get(_DIGEST_HEADER), Digest.of(raw), f"manifest {repo}:{ref}")
    return reply


class _Body:
    """The upload's body: counts what was sent and keeps the source's own error.

    Always true, even before its first chunk: a redirect of it (301/302) must know that
    it had a body."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.sent = 0
        self.failure: BaseException | None = None

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._chunks:
                self.sent += len(chunk)
                yield chunk
        except GeneratorExit:
            raise  # the sender stopped reading (its connection broke): not the source's error
        except BaseException as exc:
            self.failure = exc
            raise


def _upload_headers(size: int | None) -> dict[str, str]:
    """With a known size the body is sent with its ``Content-Length``, else in chunked
    transfer encoding (a registry that needs the length answers 411, and fails the blob)."""
    headers = {"Content-Type": "application/octet-stream"}
    if size is not None:
        headers["Content-Length"] = str(size)
    return headers


def _pull(repo: str) -> str:
    return repository_scope(repo, "pull")


def _location(reply: Response) -> str:
    location = reply.headers.get("Location")
    if not location:
        raise MalformedResponseError(
            f"POST {redact_http_url(reply.url)}: HTTP {reply.status} without a Location"
        )
    return urljoin(reply.url, location)


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def _check_digest(header: str | None, expected: Digest, what: str) -> None:
    if header and header != str(expected):
        raise DigestMismatchError(f"{what}: registry stored it as {header[:200]}")
