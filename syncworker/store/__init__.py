"""Where mirrored content lands: an OCI image layout per repository, on disk or in S3."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncworker.errors import StoreError
from syncworker.store.base import IndexEntry, Store
from syncworker.store.fs import FsStore

__all__ = ["FsStore", "IndexEntry", "Store", "open_store"]


def open_store(root_directory: str, driver: Mapping[str, Any] | object | None = None) -> Store:
    """The store for zot's ``storage`` section: ``rootDirectory`` and ``storageDriver``.

    ``driver`` is the ``storageDriver`` section as a mapping or as an object with the same
    attribute names (``name``, ``bucket``, ...); None or an empty section means the local
    filesystem. The S3 backend is imported only when asked for (boto3 is slow to import).
    """
    settings = _as_mapping(driver)
    name = str(settings.get("name") or "").lower()
    if not settings or name in ("", "filesystem", "local"):
        return FsStore(root_directory)
    if name == "s3":
        from syncworker.store.s3 import S3Store

        store: Store = S3Store.from_driver(settings, default_root=root_directory)
        return store
    raise StoreError(f"storage.storageDriver.name: unknown driver {name!r} (filesystem, s3)")


def _as_mapping(driver: Mapping[str, Any] | object | None) -> dict[str, Any]:
    """The section as a dict with zot's key spelling (``regionEndpoint``, ``region_endpoint``
    and ``regionendpoint`` all become ``regionendpoint``)."""
    if driver is None:
        return {}
    if isinstance(driver, Mapping):
        raw: Mapping[str, Any] = driver
    elif callable(dump := getattr(driver, "model_dump", None)):  # pydantic, not imported here
        raw = dump(exclude_unset=True)  # unset keys take distribution's defaults, below
    else:
        raw = {k: v for k, v in vars(driver).items() if not k.startswith("_")}
    return {str(k).replace("_", "").lower(): v for k, v in raw.items() if v is not None}
