"""Pure OCI values: digests, names and references, media types, platforms, manifests."""

from syncworker.oci.digest import Digest, VerifyingReader, verifying
from syncworker.oci.manifest import MAX_MANIFEST_BYTES, Descriptor, Manifest, parse_manifest
from syncworker.oci.mediatypes import MANIFEST_ACCEPT
from syncworker.oci.names import (
    Reference,
    docker_hub_repository,
    validate_repository,
    validate_tag,
)
from syncworker.oci.platform import Platform

__all__ = [
    "MANIFEST_ACCEPT",
    "MAX_MANIFEST_BYTES",
    "Descriptor",
    "Digest",
    "Manifest",
    "Platform",
    "Reference",
    "VerifyingReader",
    "docker_hub_repository",
    "parse_manifest",
    "validate_repository",
    "validate_tag",
    "verifying",
]
