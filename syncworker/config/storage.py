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
    bucket: str = Field(min_length=1)
    root_directory: str = Field("", alias="rootdirectory")
    region: str | None = None
    region_endpoint: str | None = Field(None, alias="regionendpoint")
    secure: bool = True
    skip_verify: bool = Field(False, alias="skipverify")
    # Unset: path-style addressing exactly when a custom endpoint is given.
    force_path_style: bool | None = Field(None, alias="forcepathstyle")
    access_key: SecretStr | None = Field(None, alias="accesskey")
    secret_key: SecretStr | None = Field(None, alias="secretkey")
    session_token: SecretStr | None = Field(None, alias="sessiontoken")
    storage_class: str | None = Field(None, alias="storageclass")
    encrypt: bool = False
    key_id: str | None = Field(None, alias="keyid")
    chunk_size: int | None = Field(None, alias="chunksize", ge=5 * 1024 * 1024)
    multipart_copy_chunk_size: int | None = Field(None, alias="multipartcopychunksize", ge=1)
    multipart_copy_max_concurrency: int | None = Field(
        None, alias="multipartcopymaxconcurrency", ge=1
    )
    multipart_copy_threshold_size: int | None = Field(
        None, alias="multipartcopythresholdsize", ge=0
    )
    user_agent: str | None = Field(None, alias="useragent")

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


class StorageConfig(ConfigModel):
    model_config = ConfigDict(extra="ignore")

    root_directory: str = Field(min_length=1)
    dedupe: bool = True
    gc: bool = True
    commit: bool = False
    storage_driver: S3DriverConfig | None = None
    redirect: RedirectConfig | None = None
    # zot's own, opaque to us (a cache driver may hold a database password).
    cache_driver: dict[str, Any] | None = Field(None, repr=False)
    sub_paths: dict[str, Any] = Field(default_factory=dict, repr=False)
    gc_delay: Any = None
    gc_interval: Any = None
