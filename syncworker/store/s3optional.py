"""What an S3-compatible server may leave out, and how the S3 store does without it.

AWS S3, MinIO, Ceph RGW and moto implement every call the store makes. Smaller servers
(s3rver, some gateways) leave out calls the store can live without; each such call degrades
one feature, with one warning per server naming the call, never the mirror:

=========================  ===============================================================
missing                    what the store does instead
=========================  ===============================================================
ListMultipartUploads       ``clean_leftovers`` finds no stale uploads: parts of a writer
                           that was killed stay on the server (never visible as objects;
                           a lifecycle rule AbortIncompleteMultipartUpload removes them)
AbortMultipartUpload       a failed blob write's parts stay on the server, as above
UploadPartCopy             a blob above the copy threshold is linked with one CopyObject
                           (AWS refuses those above 5 GiB; a server without UploadPartCopy
                           has no such limit that we know of)
If-None-Match / If-Match   ``index.json`` is written plainly, so two writers of one
on PutObject (refused or   repository could lose an update: the repository lock (Redis
silently ignored)          for several processes) is then the only guard; a blob written
                           twice is overwritten with the same bytes (same digest)
=========================  ===============================================================

What no server may leave out: GetObject, HeadObject, PutObject, CopyObject,
ListObjectsV2, DeleteObject, and the multipart calls CreateMultipartUpload, UploadPart and
CompleteMultipartUpload for blobs larger than one part. And one property: a PutObject
replaces an object whole, and a GetObject after it returns the new bytes. A server that
writes objects in place while answering (s3rver does) can show a reader a truncated
``index.json`` (the reader fails with "index.json is not JSON" and the next run mends it)
or a stale one; the store reads its own ``index.json`` writes back until they show, which
keeps one writer's updates, but cannot stop other readers seeing a half-written object.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from syncworker.errors import StoreError
from syncworker.store.layoutbackend import Stored
from syncworker.store.s3multipart import CONFLICT_CODES, error_code

__all__ = ["UNSUPPORTED", "conditions_honoured", "is_unsupported", "lacks", "shows"]

log = logging.getLogger(__name__)

# What servers answer for a call they do not implement.
UNSUPPORTED = frozenset({"NotImplemented", "501", "MethodNotAllowed", "405"})

# A server without conditional writes may answer a GetObject right after a PutObject with
# the old bytes: a write is read back until it shows, this often, this far apart.
READ_BACK_TRIES = 50
READ_BACK_PAUSE = 0.05

_warned: set[tuple[str, str]] = set()
_warned_guard = threading.Lock()


def is_unsupported(exc: ClientError) -> bool:
    return error_code(exc) in UNSUPPORTED


def lacks(where: str, operation: str, instead: str) -> None:
    """Warn, once per process and server, that ``where`` lacks ``operation``."""
    with _warned_guard:
        if (where, operation) in _warned:
            return
        _warned.add((where, operation))
    log.warning("%s does not implement %s: %s", where, operation, instead)


def conditions_honoured(client: Any, bucket: str, prefix: str) -> bool:
    """Whether the server refuses a PutObject whose If-None-Match fails: a probe object
    under ``prefix``, written twice, then deleted. Servers that do not implement the
    header may refuse it (NotImplemented) or ignore it (the second write succeeds)."""
    key = f"{prefix}.syncworker-probe-{uuid.uuid4().hex}"
    client.put_object(Bucket=bucket, Key=key, Body=b"")
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"", IfNoneMatch="*")
    except ClientError as exc:
        if error_code(exc) in CONFLICT_CODES:
            return True
        if is_unsupported(exc):
            return False
        raise
    finally:
        client.delete_object(Bucket=bucket, Key=key)
    return False


def shows(get: Callable[[], Stored | None], data: bytes) -> bool:
    """Whether ``get`` comes to return ``data`` within a few seconds (a read cut short, of
    an object the server is still writing, is one more try)."""
    for _ in range(READ_BACK_TRIES):
        try:
            found = get()
        except StoreError:
            found = None
        if found is not None and found.data == data:
            return True
        time.sleep(READ_BACK_PAUSE)
    return False
