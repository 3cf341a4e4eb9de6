"""A streamed S3 multipart upload that becomes visible only when the caller completes it.

Bytes are copied into two fixed part buffers: one fills while boto3's ``upload_part`` sends
the other (boto3 retries a part by resending the same buffer, so a buffer is reused only
once its upload is done). Memory is two parts, allocated once: no per-part allocations for
the C allocator to fragment (with fresh 16 MiB ``bytes`` per part, the peak RSS of a 200 MiB
upload varied between runs). Until ``complete`` nothing exists at the key (S3's
CompleteMultipartUpload is what creates the object), so ``abort`` after any failure leaves
nothing behind.
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
        part_size: int,
        on_abort_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._errors = errors
        self._object_args = dict(object_args)
        self._create_only = create_only
        self._on_abort_error = on_abort_error
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._inflight: Future[dict[str, Any]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._inflight_buffer: bytearray | None = None
        self._part_size = part_size
        self._filling = bytearray()
        self._filled = 0
        self._spare: bytearray | None = None

    def write(self, data: bytes) -> None:
        """Append ``data``; a full part is sent once more bytes arrive after it (so the last
        part is never empty)."""
        view = memoryview(data)
        while view:
            if self._filled == self._part_size:
                self._send_full()
            if not self._filling:
                self._filling = self._spare or bytearray(self._part_size)
                self._spare = None
            taken = min(self._part_size - self._filled, len(view))
            self._filling[self._filled : self._filled + taken] = view[:taken]
            self._filled += taken
            view = view[taken:]

    def complete(self) -> None:
        """Send the last part and make the object visible (call only once it verified)."""
        self._wait()
        self._spare = self._inflight_buffer = None  # only the last part's buffer is needed now
        if self._filled:
            last = self._filling
            if self._filled < self._part_size:
                last = bytearray(memoryview(self._filling)[: self._filled])
            self._filling = bytearray()
            self._submit(last)
            self._filled = 0
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
        """Drop everything sent so far; never raises (clean_leftovers gets what it misses;
        ``on_abort_error`` is told why the server refused)."""
        if self._inflight is not None:
            self._inflight.cancel()
            with suppress(Exception):
                self._inflight.result()
            self._inflight = None
        self._close()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            try:
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=upload_id
                )
            except Exception as exc:  # noqa: BLE001 - the write's own error matters more
                if self._on_abort_error is not None:
                    self._on_abort_error(exc)

    def _upload_part(self, number: int, body: bytes | bytearray) -> dict[str, Any]:
        with self._errors("UploadPart", self._key):
            answer = self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
            )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _send_full(self) -> None:
        """Send the full buffer; take over the buffer of the part sent before it."""
        self._wait()
        full, self._filling, self._filled = self._filling, bytearray(), 0
        self._spare = self._inflight_buffer
        self._submit(full)

    def _submit(self, body: bytes | bytearray) -> None:
        if self._upload_id is None:
            with self._errors("CreateMultipartUpload", self._key):
                answer = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key, **self._object_args
                )
            self._upload_id = str(answer["UploadId"])
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="s3-part")
        assert self._pool is not None and self._inflight is None
        self._inflight_buffer = body if isinstance(body, bytearray) else None
        self._inflight = self._pool.submit(self._upload_part, len(self._parts) + 1, body)

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
