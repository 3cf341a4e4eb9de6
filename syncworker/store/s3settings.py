"""The S3 store's settings: plain values, with distribution's s3-aws defaults.

The configuration layer makes them from the parsed ``storageDriver`` section
(``syncworker.config.storeopen``); the store never reads the configuration models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

__all__ = ["COPY_PART", "COPY_THRESHOLD", "MAX_PARTS", "MIN_PART", "PART_SIZE", "S3Settings"]

MIB = 1024 * 1024
# Parts of a streamed upload. Memory is about two parts per blob being written (one filling,
# one uploading); 16 MiB x 10,000 parts (S3's limit) still allows blobs of 156 GiB, and a
# declared larger size raises the part size to fit.
PART_SIZE = 16 * MIB
MIN_PART = 5 * MIB  # S3: every part but the last is at least 5 MiB
MAX_PARTS = 10_000
# CopyObject copies up to 5 GiB in one request; above that UploadPartCopy ranges are needed.
COPY_THRESHOLD = 5 * 1024 * MIB
COPY_PART = 512 * MIB


@dataclass(frozen=True, repr=False)
class S3Settings:
    bucket: str
    root: str = ""  # key prefix, no leading or trailing slash
    region: str | None = None
    endpoint: str | None = None
    secure: bool = True
    skip_verify: bool = False
    path_style: bool = False
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    part_size: int = PART_SIZE
    copy_threshold: int = COPY_THRESHOLD
    copy_part: int = COPY_PART
    storage_class: str | None = None
    encrypt: bool = False
    kms_key_id: str | None = None
    user_agent: str | None = None

    def __repr__(self) -> str:
        # Hand-written: the endpoint may carry user:password@, the keys are secrets.
        return f"S3Settings({self.where()}, root={self.root!r}, part_size={self.part_size})"

    def part_size_for(self, size: int | None) -> int:
        """The part size for a blob of ``size`` bytes: large enough to fit in MAX_PARTS."""
        if size is None:
            return self.part_size
        return max(self.part_size, -(-size // MAX_PARTS))

    def object_args(self) -> dict[str, str]:
        """Extra arguments for every object we create (PutObject, multipart, copy)."""
        args: dict[str, str] = {}
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        if self.kms_key_id:
            args |= {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
        elif self.encrypt:
            args["ServerSideEncryption"] = "AES256"
        return args

    def where(self) -> str:
        """Bucket and endpoint for error messages (never credentials)."""
        if not self.endpoint:
            return f"bucket {self.bucket!r} at the AWS default endpoint"
        url = urlsplit(self.endpoint)
        host = url.netloc.rpartition("@")[2]  # never echo user:password@ from a URL
        return f"bucket {self.bucket!r} at {urlunsplit(url._replace(netloc=host))}"
