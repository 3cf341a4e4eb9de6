"""The S3 store: the same OCI image layout as the filesystem store, as keys of one bucket.

Keys are ``<rootdirectory>/<repo>/oci-layout``, ``.../index.json``, ``.../blobs/<alg>/<hex>``,
what zot's S3 storage reads. boto3 does the S3 work (signing, retries, connection pooling,
managed copies); this module only decides what to write when. botocore exceptions become
StoreError in one place, :meth:`S3Store._errors`.

Visibility (issue 4): a blob is streamed into a multipart upload that is completed only
after the digest verified, so its final key never holds partial or wrong content; an
un-completed upload is invisible and is aborted on any error (or, after a crash, by
``clean_leftovers``). Blobs smaller than one part are buffered and sent in one PutObject,
again only after they verify.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from syncworker.errors import StoreError
from syncworker.oci import Digest, VerifyingReader
from syncworker.store import layout
from syncworker.store.base import IndexEntry
from syncworker.store.s3multipart import CONFLICT_CODES, MultipartUpload, error_code
from syncworker.store.s3settings import S3Settings

__all__ = ["LEFTOVER_GRACE_SECONDS", "S3Store"]

# An upload initiated this long ago belongs to a dead writer; a live one sends a part every
# few seconds, but S3 only records when it was initiated, so the grace covers a large blob
# on a slow upstream.
LEFTOVER_GRACE_SECONDS = 24 * 3600.0
# A lost race of conditional index.json writes is retried this many times (each attempt
# re-reads and re-merges); the caller's Redis lock makes even one retry rare.
INDEX_WRITE_ATTEMPTS = 8
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_UNSUPPORTED = frozenset({"NotImplemented", "501"})
_HEAD_BUCKET_CODES = {"404": "NoSuchBucket", "403": "AccessDenied", "301": "PermanentRedirect"}
MARKER_DIR = ".digests"  # digest -> repository markers, see find_blob


class S3Store:
    """An OCI-layout store in one bucket; construction checks that the bucket answers."""

    def __init__(self, settings: S3Settings, *, check: bool = True) -> None:
        self.settings = settings
        self._bucket = settings.bucket
        self._client = _client(settings, retries=5)
        self._guard = threading.Lock()
        self._repo_locks: dict[str, threading.Lock] = {}
        self._with_layout: set[str] = set()
        self._found: dict[Digest, str] = {}
        self._conditional = True  # cleared if the server refuses If-Match / If-None-Match
        if check:
            self.check()

    @classmethod
    def from_driver(cls, driver: Mapping[str, Any], default_root: str = "") -> S3Store:
        return cls(S3Settings.from_driver(driver, default_root))

    @property
    def client(self) -> Any:
        """The boto3 client (tests hook its events to see which calls were made)."""
        return self._client

    def __repr__(self) -> str:
        return f"S3Store({self.settings.where()}, root={self.settings.root!r})"

    def check(self) -> None:
        """Fail fast, with one attempt, when the bucket is missing, unreachable or forbidden."""
        probe = _client(self.settings, retries=1)
        with self._errors("HeadBucket", ""):
            probe.head_bucket(Bucket=self._bucket)

    # -- blobs --------------------------------------------------------------------------

    def has_blob(self, repo: str, digest: Digest) -> bool:
        return self._head(self._blob_key(repo, digest)) is not None

    def find_blob(self, digest: Digest) -> str | None:
        # S3 cannot list keys by suffix, and one HEAD per repository does not scale; so
        # every blob written here leaves a tiny marker naming its repository, read in one GET
        # and checked with one HEAD. Blobs written by other tools have no marker: missing
        # them costs a download, never correctness.
        for hint in (self._found.get(digest), self._read_marker(digest)):
            if hint is not None and self._holds(hint, digest):
                self._found[digest] = hint
                return hint
        return None

    def link_blob(self, src_repo: str, repo: str, digest: Digest) -> None:
        src, dst = self._blob_key(src_repo, digest), self._blob_key(repo, digest)
        if self._head(dst) is not None:
            return
        source = self._head(src)
        if source is None:
            raise StoreError(f"{src_repo}: blob {digest} is absent (s3://{self._bucket}/{src})")
        where = {"Bucket": self._bucket, "Key": src}
        with self._errors("CopyObject", dst):
            if int(source["ContentLength"]) < self.settings.copy_threshold:
                # One request, and the copy appears whole or not at all.
                self._client.copy_object(
                    Bucket=self._bucket, Key=dst, CopySource=where, **self.settings.object_args()
                )
            else:
                # CopyObject stops at 5 GiB: boto3's managed copy sends UploadPartCopy ranges.
                transfer = TransferConfig(
                    multipart_threshold=self.settings.copy_threshold,
                    multipart_chunksize=self.settings.copy_part,
                )
                extra = self.settings.object_args() or None
                self._client.copy(where, self._bucket, dst, ExtraArgs=extra, Config=transfer)
        self._remember(digest, repo)

    def put_blob(self, repo: str, digest: Digest, size: int | None, chunks: Iterable[bytes]) -> int:
        key = self._blob_key(repo, digest)
        part_size = self.settings.part_size_for(size)
        reader = VerifyingReader(chunks, digest, size)
        head: list[bytes] = []  # a blob that fits one part is sent in one PutObject
        filled = 0
        upload: MultipartUpload | None = None
        try:
            for chunk in reader:  # raises before the last chunk on any mismatch
                if upload is not None:
                    upload.write(chunk)
                    continue
                head.append(chunk)
                filled += len(chunk)
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
        self._remember(digest, repo)
        return reader.bytes_read

    def put_manifest(self, repo: str, digest: Digest, raw: bytes) -> None:
        self.put_blob(repo, digest, len(raw), [raw])

    def read_blob(self, repo: str, digest: Digest) -> bytes:
        key = self._blob_key(repo, digest)
        found = self._get(key)
        if found is None:
            raise StoreError(f"{repo}: blob {digest} is absent (s3://{self._bucket}/{key})")
        return found[0]

    # -- index.json -----------------------------------------------------------------------

    def index(self, repo: str) -> list[IndexEntry]:
        found = self._get(self._repo_key(repo, layout.INDEX_FILE))
        doc = layout.new_index() if found is None else layout.load_index(found[0], repo)
        return layout.entries_of(doc, repo)

    def update_index(self, repo: str, entries: Sequence[IndexEntry]) -> bool:
        key = self._repo_key(repo, layout.INDEX_FILE)
        with self._guard:
            lock = self._repo_locks.setdefault(repo, threading.Lock())
        with lock:
            for _ in range(INDEX_WRITE_ATTEMPTS):
                found = self._get(key)
                doc = layout.new_index() if found is None else layout.load_index(found[0], repo)
                merged = layout.merge_index(doc, entries)
                if merged is None:
                    return False
                self._ensure_layout(repo)
                # Second defence behind the caller's Redis lock: write only over what was read.
                condition = {"IfMatch": found[1]} if found else {"IfNoneMatch": "*"}
                if self._put(key, layout.dump_index(merged), condition):
                    return True
        raise StoreError(f"{repo}: index.json kept changing under us ({self.settings.where()})")

    # -- the whole store --------------------------------------------------------------------

    def repositories(self) -> list[str]:
        """Walk the key tree one "directory" per request, never listing blobs."""
        found: list[str] = []
        todo = [self._prefix()]
        while todo:
            prefix = todo.pop()
            files, dirs = self._list_level(prefix)
            is_repo = layout.INDEX_FILE in files
            if is_repo:
                found.append(prefix[len(self._prefix()) :].rstrip("/"))
            todo += [
                prefix + d + "/"
                for d in dirs
                if not d.startswith(".")
                and not ((is_repo or layout.LAYOUT_FILE in files) and d == "blobs")
            ]
        return sorted(found)

    def clean_leftovers(self, max_age: float = LEFTOVER_GRACE_SECONDS) -> int:
        """Abort multipart uploads under the root initiated ``max_age`` seconds ago or more."""
        cutoff = datetime.now(UTC) - timedelta(seconds=max_age)
        removed = 0
        with self._errors("ListMultipartUploads", self._prefix()):
            pages = self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self._bucket, Prefix=self._prefix()
            )
            stale = [
                u for page in pages for u in page.get("Uploads", []) if u["Initiated"] <= cutoff
            ]
        for upload in stale:
            with self._errors("AbortMultipartUpload", upload["Key"]):
                try:
                    self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
                except ClientError as exc:
                    if error_code(exc) not in _MISSING | {"NoSuchUpload"}:
                        raise  # another cleaner got there first otherwise
        return removed

    # -- keys and requests ------------------------------------------------------------------

    def _prefix(self) -> str:
        return f"{self.settings.root}/" if self.settings.root else ""

    def _repo_key(self, repo: str, name: str) -> str:
        return f"{self._prefix()}{layout.check_repo_name(repo)}/{name}"

    def _blob_key(self, repo: str, digest: Digest) -> str:
        return self._prefix() + layout.blob_name(layout.check_repo_name(repo), digest)

    def _marker_key(self, digest: Digest) -> str:
        return f"{self._prefix()}{MARKER_DIR}/{digest.algorithm}/{digest.hex}"

    def _multipart(self, key: str, part_size: int) -> MultipartUpload:
        return MultipartUpload(
            self._client,
            self._bucket,
            key,
            self._errors,
            self.settings.object_args(),
            create_only=self._conditional,
            part_size=part_size,
        )

    def _holds(self, repo: str, digest: Digest) -> bool:
        try:
            return self.has_blob(repo, digest)
        except StoreError:
            return False  # a corrupt marker naming no valid repository

    def _read_marker(self, digest: Digest) -> str | None:
        found = self._get(self._marker_key(digest))
        return found[0].decode("utf-8", "replace") if found is not None else None

    def _remember(self, digest: Digest, repo: str) -> None:
        """Note where ``digest`` lives. A marker is a hint checked before use: failing to
        write one costs at most a download later, so it does not fail the copy."""
        self._found[digest] = repo
        with suppress(Exception):  # clean_leftovers gets what this misses
            self._put(self._marker_key(digest), repo.encode())

    def _ensure_layout(self, repo: str) -> None:
        if repo in self._with_layout:
            return
        key = self._repo_key(repo, layout.LAYOUT_FILE)
        if self._head(key) is None:
            self._put(key, layout.LAYOUT_BYTES)
        self._with_layout.add(repo)

    def _head(self, key: str) -> dict[str, Any] | None:
        with self._errors("HeadObject", key):
            return _unless_missing(lambda: self._client.head_object(Bucket=self._bucket, Key=key))

    def _get(self, key: str) -> tuple[bytes, str] | None:
        """Body and ETag of a small object, or None when it does not exist."""
        with self._errors("GetObject", key):
            answer = _unless_missing(lambda: self._client.get_object(Bucket=self._bucket, Key=key))
            if answer is None:
                return None
            with answer["Body"] as body:
                return body.read(), str(answer["ETag"])

    def _put(self, key: str, data: bytes, condition: Mapping[str, str] | None = None) -> bool:
        """PutObject; False when ``condition`` (If-Match / If-None-Match) failed."""
        condition = condition if self._conditional else None
        with self._errors("PutObject", key):
            try:
                self._client.put_object(
                    Bucket=self._bucket,
                    Key=key,
                    Body=data,
                    **(condition or {}),
                    **self.settings.object_args(),
                )
            except ClientError as exc:
                if condition and error_code(exc) in CONFLICT_CODES:
                    return False
                if condition and error_code(exc) in _UNSUPPORTED:
                    self._conditional = False  # an S3-compatible server without them
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
            error = StoreError(
                f"{self.settings.where()}: {operation} {key or '(bucket)'}: "
                f"{code} {exc.response.get('Error', {}).get('Message', '')}".rstrip()
            )
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            error.temporary = status >= 500 or error_code(exc) in ("SlowDown", "RequestTimeout")
            raise error from exc
        except BotoCoreError as exc:
            error = StoreError(f"{self.settings.where()}: {operation} {key or '(bucket)'}: {exc}")
            error.temporary = True
            raise error from exc

    def _list_level(self, prefix: str) -> tuple[set[str], list[str]]:
        files: set[str] = set()
        dirs: list[str] = []
        with self._errors("ListObjectsV2", prefix):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                files.update(o["Key"][len(prefix) :] for o in page.get("Contents", []))
                dirs += [
                    p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])
                ]
        return files, dirs


_SESSION: list[boto3.session.Session] = []
_SESSION_LOCK = threading.Lock()


def _client(settings: S3Settings, retries: int) -> Any:
    # One boto3 session per process: a session loads the service models (about half a
    # second); clients made from it share them. Credentials go to the client, not the
    # session, so stores with different keys still share it. Sessions are not thread-safe.
    with _SESSION_LOCK:
        if not _SESSION:
            _SESSION.append(boto3.session.Session())
        return _SESSION[0].client(
            "s3",
            region_name=settings.region,
            endpoint_url=settings.endpoint,
            use_ssl=settings.secure,
            verify=not settings.skip_verify,
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=settings.secret_key,
            aws_session_token=settings.session_token,
            config=_config(settings, retries),
        )


def _config(settings: S3Settings, retries: int) -> Config:
    return Config(
        retries={"mode": "standard", "max_attempts": retries},
        connect_timeout=5,  # seconds; an unreachable endpoint must fail fast
        read_timeout=60,
        max_pool_connections=32,  # concurrent blob copies per worker share one client
        s3={"addressing_style": "path" if settings.path_style else "auto"},
        user_agent_extra=settings.user_agent,
        # Content checksums only where S3 requires them: several S3-compatible servers
        # reject the CRC headers newer botocore adds by default; our digests verify content.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def _unless_missing(call: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return call()
    except ClientError as exc:
        if error_code(exc) in _MISSING:
            return None
        raise
