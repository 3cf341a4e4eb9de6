"""Where mirrored content lands: an OCI image layout per repository, on disk or in S3."""

from syncworker.store.base import IndexEntry, Store

__all__ = ["IndexEntry", "Store"]
