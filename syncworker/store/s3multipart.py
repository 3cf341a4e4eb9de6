"""A streamed S3 multipart upload that becomes visible only when the caller completes it.

Parts are sent by boto3's ``upload_part`` (boto3 retries each one; its body is bytes, so a
retry resends it). One part is in flight while the next fills, so memory stays at about two
parts. Until ``complete`` nothing exists at the key (S3 CompleteMultipartUpload is what
creates the object), so ``abort`` after any failure leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, suppress
from typing import Any

from botocore.exceptions import ClientError

__all__ = ["CONFLICT_CODES", "MultipartUpload", "error_code"]

# A conditional write lost: If-Match / If-None-Match failed, or raced another writer.
CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})

Errors = Callable[[str, str], AbstractContextManager[None]]


class MultipartUpload:
    """One upload to ``key``, created on the first part.

    ``errors(operation, key)`` is the store's translation of botocore exceptions, so this
    class raises StoreError like every other store call.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        errors: Errors,
        object_args: Mapping[str, str],
        create_only: bool,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._errors = errors
        self._object_args = dict(object_args)
        self._create_only = create_only
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._inflight: Future[dict[str, Any]] | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def started(self) -> bool:
        return self._upload_id is not None

    def send(self, body: bytes) -> None:
        """Queue the next part; waits for the previous part first."""
        if self._upload_id is None:
            with self._errors("CreateMultipartUpload", self._key):
                answer = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key, **self._object_args
                )
            self._upload_id = str(answer["UploadId"])
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="s3-part")
        self._wait()
        assert self._pool is not None
        self._inflight = self._pool.submit(self._upload_part, len(self._parts) + 1, body)

    def complete(self) -> None:
        """Make the object visible (call only after the content verified)."""
        self._wait()
        # If-None-Match: an identical blob already at the key (same digest) is kept as is.
        condition = {"IfNoneMatch": "*"} if self._create_only else {}
        with self._errors("CompleteMultipartUpload", self._key):
            try:
                self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                    **condition,
                )
            except ClientError as exc:
                if error_code(exc) not in CONFLICT_CODES:
                    raise
                self.abort()
        self._upload_id = None
        self._close()

    def abort(self) -> None:
        """Drop everything sent so far; never raises (clean_leftovers gets what it misses)."""
        if self._inflight is not None:
            self._inflight.cancel()
            with suppress(Exception):
                self._inflight.result()
            self._inflight = None
        self._close()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            with suppress(Exception):
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=upload_id
                )

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        with self._errors("UploadPart", self._key):
            answer = self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
            )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _wait(self) -> None:
        if self._inflight is not None:
            done, self._inflight = self._inflight, None
            self._parts.append(done.result())

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def error_code(exc: ClientError) -> str:
    """The S3 error code (``NoSuchKey``), or the HTTP status for bodiless HEAD answers."""
    return str(exc.response.get("Error", {}).get("Code", "")) or "Unknown"
