"""``GET /v2/<name>/blobs/<digest>``: a blob streamed through a verifying reader."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from syncworker.errors import SizeLimitError
from syncworker.oci import Descriptor, VerifyingReader
from syncworker.redact import redact_http_url
from syncworker.registry import answers, paths
from syncworker.registry.stack import Stack

__all__ = ["BLOB_CHUNK", "blob"]

# Large enough that per-chunk Python overhead is noise next to the copy; small enough
# that dozens of concurrent streams stay within a few tens of MiB.
BLOB_CHUNK = 1024 * 1024


@contextmanager
def blob(t: Stack, repo: str, descriptor: Descriptor) -> Iterator[Iterable[bytes]]:
    """Chunks of the blob; iteration raises at the end on a size or digest mismatch.

    The body is never buffered whole. Redirects (to object storage, typically) are
    followed by the redirect layer's policy, without our credentials.
    """
    limit = t.options.max_blob_size
    if descriptor.size > limit:
        raise SizeLimitError(
            f"blob {descriptor.digest} of {descriptor.size} bytes exceeds maxBlobSize ({limit})"
        )
    response = t.open(
        "GET",
        paths.repo_path(repo, "blobs", str(descriptor.digest)),
        scope=paths.pull_scope(repo),
        # Content-Encoding would change nothing we keep but cost CPU on both ends.
        headers={"Accept-Encoding": "identity"},
    )
    t.stats.add(blob_gets=1)
    with response:
        where = f"{descriptor.digest}: {redact_http_url(response.url)}"
        declared = answers.declared_length(response.headers, where)
        if declared is not None and declared != descriptor.size:
            raise SizeLimitError(f"{where} sends {declared} bytes, declared {descriptor.size}")
        chunks = response.chunks(BLOB_CHUNK)
        yield VerifyingReader(chunks, descriptor.digest, descriptor.size)
