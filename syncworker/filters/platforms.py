"""Which children of an index the ``platforms`` setting keeps, and so which children a
store holds once the index is mirrored."""

from __future__ import annotations

from collections.abc import Sequence

from syncworker.oci import Descriptor, Manifest, Platform

__all__ = ["children_key", "expected_children", "wants_platform"]


def wants_platform(wanted: Sequence[Platform], platform: Platform | None) -> bool:
    """Whether a child of an index with ``platform`` is mirrored when ``wanted`` is asked.

    Nothing wanted means everything. A child with no platform, or the ``unknown/unknown``
    platform BuildKit gives its attestation manifests, is always kept: it describes the
    images next to it rather than running anywhere, and it is small.
    """
    if not wanted or platform is None or platform.os == "unknown":
        return True
    return any(want.matches(platform) for want in wanted)


def expected_children(index: Manifest, platforms: Sequence[Platform]) -> list[Descriptor]:
    """The children of ``index`` that a store holding the index holds too: those whose
    platform ``platforms`` wants. The others are never copied, so their absence is
    expected, not damage. The one rule for what the sync copies, what gc marks and what a
    check requires."""
    return [child for child in index.children if wants_platform(platforms, child.platform)]


def children_key(platforms: Sequence[Platform]) -> str:
    """``platforms`` as one string, the same for the same setting: what an index's
    children were completed under (two settings with one key expect the same children)."""
    return ",".join(sorted({str(p) for p in platforms})) or "*"
