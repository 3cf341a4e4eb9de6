"""The S3 store: the same OCI image layout as the filesystem store, as keys of one bucket.

Keys are ``<rootdirectory>/<key>`` (``.../<repo>/index.json``, ``.../blobs/<alg>/<hex>``),
what zot's S3 storage reads. boto3 does the S3 work (signing, retries, connection pooling,
managed copies, its client made in ``syncworker/store/s3client.py``); this module only
maps the layout's primitives onto it. botocore exceptions become StoreError in one place,
:meth:`S3Backend._errors`.

Visibility: a blob is streamed into a multipart upload that is completed only after the
digest verified, so its final key never holds partial or wrong content; an un-completed
upload is invisible and is aborted on any error (or, after a crash, by ``clean_leftovers``).
Blobs smaller than one part are buffered and sent in one PutObject, again only after they
verify. Conditional writes (If-Match / If-None-Match) keep concurrent index.json merges from
losing updates; on a server without them, plain writes behind the caller's lock. What a
server may leave out, and what the store does then: ``syncworker/store/s3optional.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from syncworker.errors import StoreError
from syncworker.store.layout import LayoutStore
from syncworker.store.layoutbackend import Listing, Stored
from syncworker.store.s3client import connect
from syncworker.store.s3multipart import CONFLICT_CODES, MultipartUpload, error_code
from syncworker.store.s3optional import conditions_honoured, is_unsupported, lacks, shows
from syncworker.store.s3settings import S3Settings

__all__ = ["LEFTOVER_GRACE_SECONDS", "S3Backend", "S3Store"]

# An upload initiated this long ago belongs to a dead writer; a live one sends a part every
# few seconds, but S3 only records when it was initiated, so the grace covers a large blob
# on a slow upstream.
LEFTOVER_GRACE_SECONDS = 24 * 3600.0
# Reads of a blob being hashed again (a streamed GetObject body).
READ_CHUNK = 1 << 20
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_HEAD_BUCKET_CODES = {"404": "NoSuchBucket", "403": "AccessDenied", "301": "PermanentRedirect"}


class S3Backend:
    """The :class:`~syncworker.store.layoutbackend.Backend` of one bucket (and key prefix)."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.client = connect(settings, retries=5)
        self._bucket = settings.bucket
        self._prefix = f"{settings.root}/" if settings.root else ""
        # Whether the server honours If-Match / If-None-Match: probed on the first write.
        self._conditional: bool | None = None
        self._probe_guard = threading.Lock()
        self._part_copy = True  # cleared if the server lacks UploadPartCopy

    def __repr__(self) -> str:
        return f"{self.settings.where()}, root={self.settings.root!r}"

    def check(self) -> None:
        """Fail fast, with one attempt, when the bucket is missing, unreachable or forbidden."""
        probe = connect(self.settings, retries=1)
        with self._errors("HeadBucket", ""):
            probe.head_bucket(Bucket=self._bucket)

    def where(self, key: str) -> str:
        return f"s3://{self._bucket}/{self._prefix}{key}"

    def close(self) -> None:
        self.client.close()

    def head(self, key: str) -> int | None:
        found = self._head(self._prefix + key)
        return None if found is None else int(found["ContentLength"])

    def get(self, key: str) -> Stored | None:
        key = self._prefix + key
        with self._errors("GetObject", key):
            answer = _unless_missing(lambda: self.client.get_object(Bucket=self._bucket, Key=key))
            if answer is None:
                return None
            # StreamingBody.read, not the raw stream its ``with`` yields: it turns a body cut
            # short into a BotoCoreError and checks Content-Length.
            body = answer["Body"]
            try:
                return Stored(body.read(), str(answer["ETag"]))
            finally:
                body.close()

    @contextmanager
    def open(
        self, key: str, start: int = 0, length: int | None = None
    ) -> Iterator[Iterable[bytes]]:
        key = self._prefix + key
        ranged = {} if start == 0 and length is None else {"Range": _range(start, length)}
        with self._errors("GetObject", key):
            answer = self.client.get_object(Bucket=self._bucket, Key=key, **ranged)
        body = answer["Body"]
        try:
            yield self._chunks(key, body)
        finally:
            body.close()

    def _chunks(self, key: str, body: Any) -> Iterator[bytes]:
        with self._errors("GetObject", key):
            yield from body.iter_chunks(READ_CHUNK)

    def local_path(self, key: str) -> str | None:
        return None

    def presign(self, key: str, expires: int) -> str | None:
        with self._errors("PresignGetObject", key):
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self._bucket, "Key": self._prefix + key},
                ExpiresIn=expires,
            )
        return url

    def put(self, key: str, data: bytes) -> None:
        self._put(self._prefix + key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        if not self._conditions() and self.head(key) is not None:
            return False
        return self._put(self._prefix + key, data, {"IfNoneMatch": "*"})

    def put_if_match(self, key: str, data: bytes, version: str | None) -> bool:
        # Objects are durable once written: the commit is the conditional write alone.
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        written = self._put(self._prefix + key, data, condition)
        if written and not self._conditions() and not shows(lambda: self.get(key), data):
            raise StoreError(f"{self.where(key)}: the server does not show what was written")
        return written

    def write(self, key: str, chunks: Iterable[bytes], size: int | None) -> int:
        key = self._prefix + key
        part_size = self.settings.part_size_for(size)
        head: list[bytes] = []  # a blob that fits one part is sent in one PutObject
        filled = 0
        upload: MultipartUpload | None = None
        try:
            for chunk in chunks:  # a verifying reader: raises before the last chunk
                filled += len(chunk)
                if upload is not None:
                    upload.write(chunk)
                    continue
                head.append(chunk)
                if filled > part_size:
                    upload = self._multipart(key, part_size)
                    while head:  # freed chunk by chunk as it moves into the part buffer
                        upload.write(head.pop(0))
            if upload is None:
                # If-None-Match: an identical blob already there (same digest) is kept.
                self._put(key, b"".join(head), {"IfNoneMatch": "*"})
            else:
                upload.complete()
        except BaseException:
            if upload is not None:
                upload.abort()
            raise
        return filled

    def copy(self, src: str, dst: str) -> bool:
        src, dst = self._prefix + src, self._prefix + dst
        source = self._head(src)
        if source is None:
            return False
        where = {"Bucket": self._bucket, "Key": src}
        with self._errors("CopyObject", dst):
            if int(source["ContentLength"]) >= self.settings.copy_threshold and self._part_copy:
                try:
                    self._copy_in_parts(where, dst)
                    return True
                except ClientError as exc:
                    if not is_unsupported(exc):
                        raise
                    self._part_copy = False
                    lacks(self.settings.where(), "UploadPartCopy", "one CopyObject per blob")
            # One request, and the copy appears whole or not at all.
            self.client.copy_object(
                Bucket=self._bucket, Key=dst, CopySource=where, **self.settings.object_args()
            )
        return True

    def _copy_in_parts(self, where: Mapping[str, str], dst: str) -> None:
        """CopyObject stops at 5 GiB: boto3's managed copy sends UploadPartCopy ranges."""
        transfer = TransferConfig(
            multipart_threshold=self.settings.copy_threshold,
            multipart_chunksize=self.settings.copy_part,
        )
        extra = self.settings.object_args() or None
        self.client.copy(where, self._bucket, dst, ExtraArgs=extra, Config=transfer)

    def list(self, prefix: str) -> Listing:
        prefix = self._prefix + prefix
        files: set[str] = set()
        dirs: list[str] = []
        with self._errors("ListObjectsV2", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                files.update(o["Key"][len(prefix) :] for o in page.get("Contents", []))
                dirs += [
                    p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])
                ]
        return Listing(frozenset(files), tuple(sorted(dirs)))

    def aged(self, prefix: str) -> dict[str, tuple[int, float]]:
        """A server-side copy is a new object: LastModified is when it was linked too."""
        prefix = self._prefix + prefix
        now = datetime.now(UTC)
        found: dict[str, tuple[int, float]] = {}
        with self._errors("ListObjectsV2", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    age = (now - item["LastModified"]).total_seconds()
                    found[item["Key"][len(prefix) :]] = (int(item["Size"]), age)
        return found

    def delete(self, key: str) -> None:
        key = self._prefix + key
        with self._errors("DeleteObject", key):
            self.client.delete_object(Bucket=self._bucket, Key=key)

    def clean_leftovers(self, max_age: float | None) -> int:
        """Abort multipart uploads under the root initiated ``max_age`` seconds ago or more."""
        age = LEFTOVER_GRACE_SECONDS if max_age is None else max_age
        cutoff = datetime.now(UTC) - timedelta(seconds=age)
        removed = 0
        with self._errors("ListMultipartUploads", self._prefix):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self._bucket, Prefix=self._prefix
            )
            try:
                stale = [
                    u for page in pages for u in page.get("Uploads", []) if u["Initiated"] <= cutoff
                ]
            except ClientError as exc:
                if not is_unsupported(exc):
                    raise
                lacks(self.settings.where(), "ListMultipartUploads", "stale uploads stay")
                return 0
        for upload in stale:
            with self._errors("AbortMultipartUpload", upload["Key"]):
                try:
                    self.client.abort_multipart_upload(
                        Bucket=self._bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
                except ClientError as exc:
                    if error_code(exc) not in _MISSING | {"NoSuchUpload"}:
                        raise  # another cleaner got there first otherwise
        return removed

    # -- requests ---------------------------------------------------------------------------

    def _multipart(self, key: str, part_size: int) -> MultipartUpload:
        return MultipartUpload(
            self.client,
            self._bucket,
            key,
            self._errors,
            self.settings.object_args(),
            create_only=self._conditions(),
            part_size=part_size,
            on_abort_error=self._abort_failed,
        )

    def _abort_failed(self, exc: Exception) -> None:
        if isinstance(exc, ClientError) and is_unsupported(exc):
            lacks(self.settings.where(), "AbortMultipartUpload", "a failed upload's parts stay")

    def _conditions(self) -> bool:
        """Whether conditional writes work here, probed once (``s3optional``)."""
        with self._probe_guard:
            if self._conditional is None:
                with self._errors("PutObject", f"{self._prefix}.syncworker-probe-*"):
                    self._conditional = conditions_honoured(self.client, self._bucket, self._prefix)
                if not self._conditional:
                    self._lacks_conditions()
            return self._conditional

    def _lacks_conditions(self) -> None:
        lacks(
            self.settings.where(),
            "If-None-Match / If-Match on PutObject",
            "index.json is written unconditionally, the repository lock its only guard",
        )

    def _head(self, key: str) -> dict[str, Any] | None:
        with self._errors("HeadObject", key):
            return _unless_missing(lambda: self.client.head_object(Bucket=self._bucket, Key=key))

    def _put(self, key: str, data: bytes, condition: Mapping[str, str] | None = None) -> bool:
        """PutObject; False when ``condition`` (If-Match / If-None-Match) failed."""
        condition = condition if self._conditions() else None
        with self._errors("PutObject", key):
            try:
                self.client.put_object(
                    Bucket=self._bucket,
                    Key=key,
                    Body=data,
                    **(condition or {}),
                    **self.settings.object_args(),
                )
            except ClientError as exc:
                if condition and error_code(exc) in CONFLICT_CODES:
                    return False
                if condition and is_unsupported(exc):
                    self._conditional = False  # an S3-compatible server without them
                    self._lacks_conditions()
                    return self._put(key, data)
                raise
        return True

    @contextmanager
    def _errors(self, operation: str, key: str) -> Iterator[None]:
        """The one place where botocore exceptions become StoreError."""
        try:
            yield
        except ClientError as exc:
            code = error_code(exc)
            if operation == "HeadBucket":  # a HEAD answer has no body to carry the code
                code = _HEAD_BUCKET_CODES.get(code, code)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise StoreError(
                f"{self.settings.where()}: {operation} {key or '(bucket)'}: "
                f"{code} {exc.response.get('Error', {}).get('Message', '')}".rstrip(),
                status=status if isinstance(status, int) else None,
                codes=(error_code(exc),),
            ) from exc
        except BotoCoreError as exc:
            # No answer (a connection, a timeout, a body cut short): retry.classify decides.
            raise StoreError(
                f"{self.settings.where()}: {operation} {key or '(bucket)'}: {exc}",
                unanswered=True,
            ) from exc


class S3Store(LayoutStore):
    """An OCI-layout store in one bucket; construction checks that the bucket answers."""

    def __init__(self, settings: S3Settings, *, check: bool = True) -> None:
        self._s3 = S3Backend(settings)
        super().__init__(self._s3)
        if check:
            self._s3.check()

    @property
    def settings(self) -> S3Settings:
        return self._s3.settings

    @property
    def client(self) -> Any:
        """The boto3 client (tests hook its events to see which calls were made)."""
        return self._s3.client


def _range(start: int, length: int | None) -> str:
    """An HTTP Range header for ``length`` bytes from ``start`` (RFC 9110 section 14.1.2)."""
    return f"bytes={start}-" if length is None else f"bytes={start}-{start + length - 1}"


def _unless_missing(call: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return call()
    except ClientError as exc:
        if error_code(exc) in _MISSING:
            return None
        raise
