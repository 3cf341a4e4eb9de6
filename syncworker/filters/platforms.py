"""Which children of an index the ``platforms`` setting keeps."""

from __future__ import annotations

from collections.abc import Sequence

from syncworker.oci import Platform

__all__ = ["wants_platform"]


def wants_platform(wanted: Sequence[Platform], platform: Platform | None) -> bool:
    """Whether a child of an index with ``platform`` is mirrored when ``wanted`` is asked.

    Nothing wanted means everything. A child with no platform, or the ``unknown/unknown``
    platform BuildKit gives its attestation manifests, is always kept: it describes the
    images next to it rather than running anywhere, and it is small.
    """
    if not wanted or platform is None or platform.os == "unknown":
        return True
    return any(want.matches(platform) for want in wanted)
