"""The S3 store's settings, read from zot's (distribution's) ``storageDriver`` section.

Keys are distribution's s3-aws driver parameters, lower case: ``bucket``, ``rootdirectory``,
``region``, ``regionendpoint``, ``secure``, ``skipverify``, ``forcepathstyle``,
``accesskey``/``secretkey``/``sessiontoken`` (else boto3's standard credential chain),
``chunksize``, ``storageclass``, ``encrypt``, ``keyid``, ``multipartcopythresholdsize``,
``multipartcopychunksize``, ``useragent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from syncworker.errors import StoreError

__all__ = ["COPY_THRESHOLD", "MAX_PARTS", "MIN_PART", "PART_SIZE", "S3Settings"]

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

    @classmethod
    def from_driver(cls, driver: Mapping[str, Any], default_root: str = "") -> S3Settings:
        """Parse a driver section whose keys are already lower case without underscores."""
        bucket = _text(driver, "bucket")
        if not bucket:
            raise StoreError("storage.storageDriver.bucket: required for the s3 driver")
        secure = _flag(driver, "secure", True)
        endpoint = _text(driver, "regionendpoint")
        if endpoint and "://" not in endpoint:
            # distribution allows a bare host:port; ``secure`` then picks the scheme.
            endpoint = f"{'https' if secure else 'http'}://{endpoint}"
        part = _number(driver, "chunksize", PART_SIZE)
        if part < MIN_PART:
            raise StoreError(f"storage.storageDriver.chunksize: at least {MIN_PART} bytes")
        return cls(
            bucket=bucket,
            root=(_text(driver, "rootdirectory") or default_root or "").strip("/"),
            region=_text(driver, "region"),
            endpoint=endpoint,
            secure=secure,
            skip_verify=_flag(driver, "skipverify", False),
            # A custom endpoint (MinIO, Ceph, moto) rarely has per-bucket DNS names.
            path_style=_flag(driver, "forcepathstyle", endpoint is not None),
            access_key=_text(driver, "accesskey"),
            secret_key=_text(driver, "secretkey"),
            session_token=_text(driver, "sessiontoken"),
            part_size=part,
            copy_threshold=min(
                _number(driver, "multipartcopythresholdsize", COPY_THRESHOLD), COPY_THRESHOLD
            ),
            copy_part=max(_number(driver, "multipartcopychunksize", COPY_PART), MIN_PART),
            storage_class=_text(driver, "storageclass"),
            encrypt=_flag(driver, "encrypt", False),
            kms_key_id=_text(driver, "keyid"),
            user_agent=_text(driver, "useragent"),
        )

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


def _text(driver: Mapping[str, Any], key: str) -> str | None:
    value = driver.get(key)
    if value is None:
        return None
    reveal = getattr(value, "get_secret_value", None)  # pydantic SecretStr, not imported here
    text = str(reveal() if callable(reveal) else value).strip()
    return text or None


def _flag(driver: Mapping[str, Any], key: str, default: bool) -> bool:
    value = driver.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise StoreError(f"storage.storageDriver.{key}: {value!r} is not a boolean")


def _number(driver: Mapping[str, Any], key: str, default: int) -> int:
    value = driver.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StoreError(f"storage.storageDriver.{key}: {value!r} is not a number") from None
