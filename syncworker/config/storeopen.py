"""The store a configuration names, opened from zot's ``storage`` section or from
``syncworker.destination``: the configuration models become the store's plain settings here,
so the store never reads them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr, ValidationError

from syncworker.config.loader import format_path
from syncworker.config.model import Config
from syncworker.config.storage import S3DriverConfig
from syncworker.errors import ConfigError
from syncworker.store import BlobHints, FsStore, Store
from syncworker.store.protocol import ClaimRecords
from syncworker.store.s3settings import COPY_PART, COPY_THRESHOLD, MIN_PART, PART_SIZE, S3Settings

__all__ = ["open_store", "s3_settings", "store_for"]

_FILESYSTEM = ("", "filesystem", "local")


def open_store(
    root_directory: str, driver: S3DriverConfig | Mapping[str, Any] | None = None
) -> Store:
    """The store for zot's ``storage`` section: ``rootDirectory`` and ``storageDriver``.

    ``driver`` is the parsed ``storageDriver`` section, or the section as a mapping (then
    parsed here by the same model, its errors a ConfigError naming the key); None or an
    empty section means the local filesystem. The S3 backend is imported only when asked
    for (boto3 is slow to import).
    """
    if driver is None or (isinstance(driver, Mapping) and _name(driver) in _FILESYSTEM):
        return FsStore(root_directory)
    model = _parse(driver) if isinstance(driver, Mapping) else driver
    from syncworker.store.s3 import S3Store

    return S3Store(s3_settings(model, default_root=root_directory))


def store_for(
    config: Config, hints: BlobHints | None = None, claims: ClaimRecords | None = None
) -> Store:
    """The store ``config`` names: ``syncworker.destination`` (a registry) if set, else
    ``storage``. ``hints`` (a Coordinator) shares where blobs are among processes, so a
    registry destination mounts a blob another worker pushed instead of fetching it;
    ``claims`` (a Coordinator) shares which source each of its repositories mirrors."""
    dest = config.syncworker.destination
    if dest is None:
        return open_store(config.storage.root_directory, config.storage.storage_driver)
    from syncworker.store.registry import Destination, RegistryStore

    options = dest.client_options(config.syncworker.max_blob_size, config.syncworker.client_threads)
    destination = Destination(dest.url, config.destination_credentials(), options)
    return RegistryStore(destination, hints, claims)


def s3_settings(driver: S3DriverConfig, default_root: str = "") -> S3Settings:
    """The S3 store's settings of a parsed driver section; ``default_root`` is storage's
    ``rootDirectory``, the key prefix when the driver names none."""
    endpoint = driver.endpoint_url
    return S3Settings(
        bucket=driver.bucket,
        root=(driver.root_directory or default_root).strip("/"),
        region=driver.region,
        endpoint=endpoint,
        secure=driver.secure,
        skip_verify=driver.skip_verify,
        # A custom endpoint (MinIO, Ceph, moto) rarely has per-bucket DNS names.
        path_style=(
            endpoint is not None if driver.force_path_style is None else driver.force_path_style
        ),
        access_key=_secret(driver.access_key),
        secret_key=_secret(driver.secret_key),
        session_token=_secret(driver.session_token),
        part_size=driver.chunk_size or PART_SIZE,
        copy_threshold=min(
            _or(driver.multipart_copy_threshold_size, COPY_THRESHOLD), COPY_THRESHOLD
        ),
        copy_part=max(_or(driver.multipart_copy_chunk_size, COPY_PART), MIN_PART),
        storage_class=driver.storage_class,
        encrypt=driver.encrypt,
        kms_key_id=driver.key_id,
        user_agent=driver.user_agent,
    )


def _name(driver: Mapping[str, Any]) -> str:
    return str(next((v for k, v in driver.items() if str(k).lower() == "name"), "") or "").lower()


def _parse(driver: Mapping[str, Any]) -> S3DriverConfig:
    if _name(driver) != "s3":
        raise ConfigError(
            "storage.storageDriver.name", f"unknown driver {_name(driver)!r} (filesystem, s3)"
        )
    try:
        return S3DriverConfig.model_validate(dict(driver))
    except ValidationError as exc:
        problems = [
            (f"storage.storageDriver.{format_path(e['loc'])}", e["msg"]) for e in exc.errors()
        ]
        raise ConfigError(*problems[0], problems) from None


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value() or None


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
