"""Classes of tags: semantic versions (zot's ``tags.semver``) and special tags.

Special tags name the image they are about rather than an image of their own: cosign's
``sha256-<hex>.sig``, ``.att`` and ``.sbom``, and the referrers tag schema's
``sha256-<hex>`` (distribution-spec spec.md#referrers-tag-schema). They are mirrored with
their subject, whatever the tag rules say.
"""

from __future__ import annotations

import re

from syncworker.oci import Digest

__all__ = ["SPECIAL_SUFFIXES", "is_semver", "special_tag", "special_tag_subject"]

# Masterminds/semver v1.5 (zot's `tags.semver`): optional `v`, one to three numeric parts,
# then optional pre-release and build metadata. Its numbers are parsed as int64.
_SEMVER = re.compile(
    r"v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_INT64_MAX = 2**63 - 1

#: cosign's suffixes: signature, attestation, SBOM.
SPECIAL_SUFFIXES = (".sig", ".att", ".sbom")
_SPECIAL_TAG = re.compile(r"(sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128})(?:\.(?:sig|att|sbom))?")


def is_semver(tag: str) -> bool:
    """Whether zot's ``tags.semver`` rule keeps ``tag``."""
    m = _SEMVER.fullmatch(tag)
    return m is not None and all(int(n) <= _INT64_MAX for n in m.groups() if n is not None)


def special_tag_subject(tag: str) -> Digest | None:
    """The digest a special tag is about; None for any other tag."""
    m = _SPECIAL_TAG.fullmatch(tag)
    if m is None:
        return None
    algorithm, hex_ = m.group(1).split("-")
    return Digest(algorithm, hex_)


def special_tag(subject: Digest, suffix: str = "") -> str:
    """The special tag about ``subject``: the referrers tag schema's with no ``suffix``,
    cosign's with one of :data:`SPECIAL_SUFFIXES`."""
    return f"{subject.algorithm}-{subject.hex}{suffix}"
