"""Where mirrored content lands: an OCI image layout per repository, written once over small
object backends (a directory, an S3 bucket), or a registry that everything is pushed to.

``syncworker.config.storeopen`` opens the store a configuration names."""

from syncworker.store.claim import Source
from syncworker.store.fs import FsStore
from syncworker.store.protocol import BlobHints, IndexEntry, RepoHolder, Store, held

__all__ = ["BlobHints", "FsStore", "IndexEntry", "RepoHolder", "Source", "Store", "held"]
