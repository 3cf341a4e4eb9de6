"""The OCI image layout shared by every backend: names inside a repository, and index.json.

image-spec image-layout.md fixes the names (``oci-layout``, ``index.json``,
``blobs/<alg>/<hex>``); image-spec image-index.md the shape of ``index.json``. Both the
filesystem and the S3 backend read and merge ``index.json`` through this module, so the
merge rule lives in one place.

``index.json`` is merged at the level of its JSON objects, not re-serialised from
:class:`Descriptor`: fields we do not model (``platform.os.version``, unknown annotations,
top-level ``annotations``) written by another tool survive a merge.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from syncworker.errors import ContentError, StoreError
from syncworker.oci import Descriptor, Digest
from syncworker.oci.mediatypes import OCI_INDEX
from syncworker.store.base import REF_NAME, IndexEntry

__all__ = [
    "INDEX_FILE",
    "LAYOUT_BYTES",
    "LAYOUT_FILE",
    "blob_name",
    "check_repo_name",
    "dump_index",
    "entries_of",
    "load_index",
    "merge_index",
    "new_index",
]

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
# image-layout.md#oci-layout-file: the only version defined so far.
LAYOUT_BYTES = b'{"imageLayoutVersion": "1.0.0"}'


def check_repo_name(repo: str) -> str:
    """Refuse a name that could leave the store's root or reach its hidden entries.

    Names are validated long before they reach a store (``oci.validate_repository``); this
    is defence in depth against ``..``, absolute names, empty segments and names starting
    with a dot (``.tmp``, ``.digests``: the store's own, never a valid repository).
    """
    parts = repo.split("/")
    if (
        not repo
        or repo.startswith("/")
        or "\\" in repo
        or "\0" in repo
        or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
    ):
        raise StoreError(f"repository name {repo[:300]!r} escapes the store root")
    return repo


def blob_name(repo: str, digest: Digest) -> str:
    """``<repo>/blobs/<alg>/<hex>``, relative to the store's root."""
    return f"{repo}/blobs/{digest.algorithm}/{digest.hex}"


def new_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def load_index(raw: bytes, where: str) -> dict[str, Any]:
    """Parse ``index.json`` bytes; a StoreError naming ``where`` if it is not an index."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise StoreError(f"{where}: index.json is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests", []), list):
        raise StoreError(f"{where}: index.json is not an OCI image index")
    doc.setdefault("manifests", [])
    return doc


def dump_index(doc: dict[str, Any]) -> bytes:
    # Compact and stable: the same content always gives the same bytes.
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def entries_of(doc: dict[str, Any], where: str) -> list[IndexEntry]:
    out = []
    for raw in doc["manifests"]:
        entry = _parse_entry(raw)
        if entry is None:
            raise StoreError(f"{where}: index.json has a malformed entry")
        out.append(entry)
    return out


def merge_index(doc: dict[str, Any], entries: Sequence[IndexEntry]) -> dict[str, Any] | None:
    """``doc`` with ``entries`` merged in, or None when that changes nothing.

    A tagged entry replaces whatever held the tag (in place, keeping the order) and any
    untagged entry of the same digest; an untagged entry is added unless its digest is
    already listed.
    """
    manifests: list[Any] = list(doc["manifests"])
    changed = False
    for entry in entries:
        if entry.tag is None:
            if not any(_digest_of(m) == str(entry.descriptor.digest) for m in manifests):
                manifests.append(_entry_json(entry))
                changed = True
        elif _replace_tag(manifests, entry):
            changed = True
    if not changed:
        return None
    return {**doc, "manifests": manifests}


def _replace_tag(manifests: list[Any], entry: IndexEntry) -> bool:
    """Put ``entry`` in ``manifests`` in place; return whether anything changed."""
    digest = str(entry.descriptor.digest)
    holders = [i for i, m in enumerate(manifests) if _tag_of(m) == entry.tag]
    redundant = [
        i for i, m in enumerate(manifests) if _tag_of(m) is None and _digest_of(m) == digest
    ]
    if len(holders) == 1 and not redundant and _parse_entry(manifests[holders[0]]) == entry:
        return False
    drop = set(holders) | set(redundant)
    position = min(drop) if drop else len(manifests)
    manifests[:] = [m for i, m in enumerate(manifests) if i not in drop]
    manifests.insert(min(position, len(manifests)), _entry_json(entry))
    return True


def _entry_json(entry: IndexEntry) -> dict[str, Any]:
    out = entry.descriptor.to_json()
    annotations = {k: v for k, v in out.get("annotations", {}).items() if k != REF_NAME}
    if entry.tag is not None:
        annotations[REF_NAME] = entry.tag
    if annotations:
        out["annotations"] = annotations
    else:
        out.pop("annotations", None)
    return out


def _parse_entry(raw: Any) -> IndexEntry | None:
    try:
        descriptor = Descriptor.from_json(raw)
    except ContentError:
        return None
    tag = descriptor.annotations.get(REF_NAME)
    if tag is not None:
        rest = {k: v for k, v in descriptor.annotations.items() if k != REF_NAME}
        descriptor = dataclasses.replace(descriptor, annotations=rest)
    return IndexEntry(descriptor, tag)


def _tag_of(raw: Any) -> str | None:
    annotations = raw.get("annotations") if isinstance(raw, dict) else None
    tag = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    return tag if isinstance(tag, str) else None


def _digest_of(raw: Any) -> str | None:
    return raw.get("digest") if isinstance(raw, dict) else None
