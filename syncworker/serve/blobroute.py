"""``GET``/``HEAD /v2/<name>/blobs/<digest>`` (spec.md "Pulling blobs"), with ``Range``.

A filesystem blob is sent by the kernel (``sendfile``), never copied through Python; an S3
blob is streamed from a ranged GetObject, or, when the storage section asks for it
(distribution's ``redirect``), answered with a redirect to a presigned URL, so its bytes
never pass through this process at all.
"""

from __future__ import annotations

import os
import re

from syncworker.errors import StoreError
from syncworker.oci import Digest
from syncworker.serve.apierrors import blob_unknown, range_invalid
from syncworker.serve.context import Served, parse_digest
from syncworker.serve.messages import FileBody, Request, Response, StreamBody

__all__ = ["get_blob", "parse_range"]

# RFC 9110 section 14.1.2: one range of bytes; a list of several is answered whole, as
# the RFC allows (and as distribution does).
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def get_blob(served: Served, request: Request, name: str, digest_text: str) -> Response:
    digest = parse_digest(digest_text)
    headers = {
        "Content-Type": "application/octet-stream",
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        # Content-addressed: what this URL answers never changes.
        "Cache-Control": "max-age=31536000",
    }
    path = served.store.blob_file(name, digest)
    if path is not None:
        return _from_file(request, path, digest, headers)
    size = served.store.blob_size(name, digest)
    if size is None:
        raise blob_unknown(str(digest))
    if request.method == "GET" and served.redirect_expiry is not None:
        url = served.store.blob_url(name, digest, served.redirect_expiry)
        if url is not None:
            return Response(307, {"Location": url, "Docker-Content-Digest": str(digest)})
    start, length, status = _part(request, size, headers)
    if request.method == "HEAD":
        return Response(status, headers, length=length)
    stream = StreamBody(lambda: served.store.open_blob_range(name, digest, start, length), length)
    return Response(status, headers, stream)


def _from_file(request: Request, path: str, digest: Digest, headers: dict[str, str]) -> Response:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise blob_unknown(str(digest)) from None
    except OSError as exc:
        raise StoreError(f"{path}: {exc.strerror or exc}") from None
    try:
        size = os.fstat(fd).st_size
        start, length, status = _part(request, size, headers)
    except BaseException:
        os.close(fd)
        raise
    if request.method == "HEAD":
        os.close(fd)
        return Response(status, headers, length=length)
    return Response(status, headers, FileBody(fd, start, length))


def _part(request: Request, size: int, headers: dict[str, str]) -> tuple[int, int, int]:
    """Start, length and status of the answer: 206 with Content-Range for a satisfiable
    Range, 416 for one past the end, the whole blob otherwise."""
    wanted = parse_range(request.headers.get("range"), size)
    if wanted is None:
        return 0, size, 200
    start, end = wanted
    if start >= size or start > end:
        raise range_invalid(size)
    end = min(end, size - 1)
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return start, end - start + 1, 206


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte a ``Range`` header asks for (the last may lie past the
    end), or None when there is no single byte range to honour."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        return max(size - int(last), 0), size - 1
    return int(first), int(last) if last else size - 1
