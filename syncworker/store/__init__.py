"""Where mirrored content lands: an OCI image layout per repository, written once over small
object backends (a directory, an S3 bucket), or a registry that everything is pushed to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from syncworker.errors import ConfigError
from syncworker.store.base import BlobHints, IndexEntry, Store
from syncworker.store.fs import FsStore

if TYPE_CHECKING:
    from syncworker.config import Config
    from syncworker.config.storage import S3DriverConfig

__all__ = ["BlobHints", "FsStore", "IndexEntry", "Store", "open_store", "store_for"]

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
    from syncworker.store.s3settings import S3Settings

    return S3Store(S3Settings.from_config(model, default_root=root_directory))


def store_for(config: Config, hints: BlobHints | None = None) -> Store:
    """The store ``config`` names: ``syncworker.destination`` (a registry) if set, else
    ``storage``. ``hints`` (a Coordinator) shares where blobs are among processes, so a
    registry destination mounts a blob another worker pushed instead of fetching it."""
    dest = config.syncworker.destination
    if dest is None:
        return open_store(config.storage.root_directory, config.storage.storage_driver)
    from syncworker.config.destination import destination_credentials
    from syncworker.store.registry import Destination, RegistryStore

    options = dest.client_options(config.syncworker.max_blob_size)
    return RegistryStore(Destination(dest.url, destination_credentials(config), options), hints)


def _name(driver: Mapping[str, Any]) -> str:
    return str(next((v for k, v in driver.items() if str(k).lower() == "name"), "") or "").lower()


def _parse(driver: Mapping[str, Any]) -> S3DriverConfig:
    from pydantic import ValidationError

    from syncworker.config.loader import format_path
    from syncworker.config.storage import S3DriverConfig

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
