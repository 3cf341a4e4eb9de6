"""zot's ``storage`` section: a root directory, or an S3 driver section as zot passes on.

zot validates this section itself and keeps adding keys to it, so keys we do not use are
ignored here rather than refused. The S3 driver takes distribution's lower-case keys
(``rootdirectory``, ``regionendpoint``, ``skipverify``...), matched in any case. This model
is the one parser of the driver section: the S3 store's settings are made from it
(``syncworker.config.storeopen.s3_settings``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr

from syncworker.config.modelbase import ConfigModel

__all__ = ["RedirectConfig", "S3DriverConfig", "StorageConfig"]


class S3DriverConfig(ConfigModel):
    """``storage.storageDriver`` with ``name: s3`` (distribution's s3-aws parameters)."""

    # Unknown distribution parameters are dropped, as distribution's driver factory does;
    # dropped rather than kept so that no stray secret reaches a repr.
    model_config = ConfigDict(extra="ignore", alias_generator=None)

    name: Literal["s3"]
    """The driver: only ``s3``."""
    bucket: str = Field(min_length=1)
    """The bucket; it must exist."""
    root_directory: str = Field("", alias="rootdirectory")
    """The key prefix under which the layouts are written."""
    region: str | None = None
    """The bucket's region; none: the AWS SDK's default."""
    region_endpoint: str | None = Field(None, alias="regionendpoint")
    """An S3-compatible endpoint (MinIO...); a bare host takes its scheme from
    ``secure``."""
    secure: bool = True
    """HTTPS (``false``: HTTP) to S3, and to a ``regionendpoint`` given without a
    scheme."""
    skip_verify: bool = Field(False, alias="skipverify")
    """Do not verify the endpoint's TLS certificate."""
    force_path_style: bool | None = Field(None, alias="forcepathstyle")
    """Path-style addressing; none: exactly when ``regionendpoint`` is given."""
    access_key: SecretStr | None = Field(None, alias="accesskey")
    """With ``secretkey``: the credentials; none: the AWS SDK's chain (environment, shared
    file, instance role)."""
    secret_key: SecretStr | None = Field(None, alias="secretkey")
    """The secret of ``accesskey``."""
    session_token: SecretStr | None = Field(None, alias="sessiontoken")
    """A session token to go with them."""
    storage_class: str | None = Field(None, alias="storageclass")
    """The storage class of every object written."""
    encrypt: bool = False
    """Server-side encryption (AES256) of every object written."""
    key_id: str | None = Field(None, alias="keyid")
    """A KMS key: every object written is encrypted with it."""
    chunk_size: int | None = Field(None, alias="chunksize", ge=5 * 1024 * 1024)
    """Bytes per part of a multipart upload (at least 5 MiB); none: 16 MiB."""
    multipart_copy_chunk_size: int | None = Field(None, alias="multipartcopychunksize", ge=1)
    """Bytes per part of a server-side copy (less than 5 MiB is taken as 5 MiB); none: 512 MiB."""
    multipart_copy_max_concurrency: int | None = Field(
        None, alias="multipartcopymaxconcurrency", ge=1
    )
    """distribution's; accepted, not acted on."""
    multipart_copy_threshold_size: int | None = Field(
        None, alias="multipartcopythresholdsize", ge=0
    )
    """Blobs larger than this many bytes are copied server-side in parts; none, or more
    than 5 GiB (one CopyObject's limit): 5 GiB."""
    user_agent: str | None = Field(None, alias="useragent")
    """Added to the S3 client's user agent."""

    @property
    def endpoint_url(self) -> str | None:
        """``regionendpoint`` with a scheme (distribution allows a bare host, then ``secure``
        picks https or http)."""
        endpoint = self.region_endpoint
        if endpoint and "://" not in endpoint:
            endpoint = f"{'https' if self.secure else 'http'}://{endpoint}"
        return endpoint or None


class RedirectConfig(ConfigModel):
    """distribution's ``storage.redirect``: ``syncworker serve`` answers a blob GET of an
    S3 store with a redirect to a presigned URL unless ``disable``. Absent (what a zot
    config has), blobs are streamed: clients may not reach the bucket."""

    disable: bool = False
    """Stream blobs through ``serve`` after all."""


class StorageConfig(ConfigModel):
    model_config = ConfigDict(extra="ignore")

    root_directory: str = Field(min_length=1)
    """The directory the mirror is written to, one OCI image layout per repository
    (required by zot's format even when ``storageDriver`` or a ``destination`` is
    used). On the filesystem, a relative path is taken from the directory the command
    runs in, not the config file's: give workers started from different directories an
    absolute one."""
    dedupe: bool = True
    """zot's; accepted, not acted on: a blob is always stored once (hard-linked, or copied
    server-side on S3)."""
    gc: bool = True
    """zot's; accepted, not acted on: ``syncworker gc`` collects garbage."""
    commit: bool = False
    """zot's; accepted, not acted on."""
    storage_driver: S3DriverConfig | None = None
    """Write to S3 instead of the directory (distribution's s3-aws parameters; others are
    ignored)."""
    redirect: RedirectConfig | None = None
    """distribution's: ``syncworker serve`` answers a blob GET of an S3 store with a
    redirect to a presigned URL unless ``disable``; absent, blobs are streamed."""
    # zot's own, opaque to us (a cache driver may hold a database password).
    cache_driver: dict[str, Any] | None = Field(None, repr=False)
    """zot's; accepted, not acted on."""
    sub_paths: dict[str, Any] = Field(default_factory=dict, repr=False)
    """zot's; accepted, not acted on."""
    gc_delay: Any = None
    """zot's; accepted, not acted on (``syncworker gc --grace``)."""
    gc_interval: Any = None
    """zot's; accepted, not acted on."""
