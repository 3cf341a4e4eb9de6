"""``index.json`` as a document: parsed, merged, and serialised with schema-valid entries.

image-spec image-layout.md fixes the file names (``oci-layout``, ``index.json``); image-spec
image-index.md and descriptor.md the shape of ``index.json`` and of its entries. Every entry
we write goes through :func:`merge_index`, so this is the one place where a descriptor
coming from an upstream is checked before a reader of the layout sees it.

``index.json`` is merged at the level of its JSON objects, not re-serialised from
:class:`Descriptor`: fields we do not model (``platform.os.version``, unknown annotations,
top-level ``annotations``) written by another tool survive a merge.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from syncworker.errors import ContentError, StoreError
from syncworker.oci import Descriptor, Platform
from syncworker.oci.document import load_json
from syncworker.oci.mediatypes import OCI_INDEX
from syncworker.store.protocol import REF_NAME, IndexEntry

__all__ = [
    "INDEX_FILE",
    "LAYOUT_BYTES",
    "LAYOUT_FILE",
    "dump_index",
    "entries_of",
    "load_index",
    "merge_index",
    "new_index",
    "remove_entries",
]

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
# image-layout.md#oci-layout-file: the only version defined so far.
LAYOUT_BYTES = b'{"imageLayoutVersion": "1.0.0"}'
# RFC 6838 section 4.2 names, as image-spec descriptor.md requires of mediaType/artifactType.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]{0,126}/[A-Za-z0-9][\w!#$&^.+-]{0,126}", re.ASCII)


def new_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def load_index(raw: bytes, where: str) -> dict[str, Any]:
    """Parse ``index.json`` bytes; a StoreError naming ``where`` if it is not an index."""
    try:
        doc = load_json(raw, f"{where}: index.json")
    except ContentError as exc:
        raise StoreError(str(exc)) from None
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


def merge_index(
    doc: dict[str, Any], entries: Sequence[IndexEntry], where: str
) -> dict[str, Any] | None:
    """``doc`` with ``entries`` merged in, or None when that changes nothing.

    Entries are made schema-valid first (see :func:`_schema_valid`); their sizes are the
    caller's to check against what is stored.

    A tagged entry replaces whatever held the tag (in place, keeping the order); an
    untagged entry is added unless its digest is already listed untagged, and replaces an
    untagged entry of its digest listed under another media type. Tags and untagged
    entries are independent: a digest synced by digest stays listed when a tag naming it
    comes and goes (a prune removes the tag, not what was asked for by digest).
    """
    manifests: list[Any] = list(doc["manifests"])
    changed = False
    for entry in (_schema_valid(e, where) for e in entries):
        if entry.tag is None:
            changed |= _put_untagged(manifests, entry)
        elif _replace_tag(manifests, entry):
            changed = True
    if not changed:
        return None
    return {**doc, "manifests": manifests}


def remove_entries(
    doc: dict[str, Any], tags: Collection[str], untagged: Collection[str]
) -> dict[str, Any] | None:
    """``doc`` without the entries of ``tags`` and the untagged entries of the digests
    ``untagged``, or None when none of them is listed."""
    manifests = [
        m
        for m in doc["manifests"]
        if not (_tag_of(m) in tags or (_tag_of(m) is None and _digest_of(m) in untagged))
    ]
    if len(manifests) == len(doc["manifests"]):
        return None
    return {**doc, "manifests": manifests}


def _put_untagged(manifests: list[Any], entry: IndexEntry) -> bool:
    """Put untagged ``entry`` in ``manifests``; return whether anything changed. A digest
    has one media type: another one listed for it is the other ``layoutMediaTypes``."""
    digest = str(entry.descriptor.digest)
    for i, m in enumerate(manifests):
        if _tag_of(m) is None and _digest_of(m) == digest:
            retyped: bool = m.get("mediaType") != entry.descriptor.media_type
            if retyped:
                manifests[i] = _entry_json(entry)
            return retyped
    manifests.append(_entry_json(entry))
    return True


def _replace_tag(manifests: list[Any], entry: IndexEntry) -> bool:
    """Put ``entry`` in ``manifests`` in place; return whether anything changed."""
    holders = [i for i, m in enumerate(manifests) if _tag_of(m) == entry.tag]
    if len(holders) == 1 and _parse_entry(manifests[holders[0]]) == entry:
        return False
    drop = set(holders)
    position = min(drop) if drop else len(manifests)
    manifests[:] = [m for i, m in enumerate(manifests) if i not in drop]
    manifests.insert(min(position, len(manifests)), _entry_json(entry))
    return True


def _entry_json(entry: IndexEntry) -> dict[str, Any]:
    out = entry.descriptor.to_json()
    if entry.tag is not None:
        out["annotations"] = {**out.get("annotations", {}), REF_NAME: entry.tag}
    return out


def _schema_valid(entry: IndexEntry, where: str) -> IndexEntry:
    """``entry`` as image-spec descriptor.md allows it in an index: required fields of the
    right type (else a StoreError, nothing is written), optional ones of the wrong type
    dropped. Descriptors come from upstream manifests, which may say anything."""
    desc, tag = entry.descriptor, entry.tag
    refused = f"{where}: refusing an index.json entry for {desc.digest}"
    if not _media_type(desc.media_type):
        raise StoreError(f"{refused}: mediaType {str(desc.media_type)[:100]!r} is not a media type")
    if type(desc.size) is not int or desc.size < 0:
        raise StoreError(f"{refused}: size {str(desc.size)[:30]!r} is not a byte count")
    if tag is not None and (type(tag) is not str or not tag):
        raise StoreError(f"{refused}: the tag is not a string")
    annotations = desc.annotations if isinstance(desc.annotations, Mapping) else {}
    clean = dataclasses.replace(
        desc,
        platform=_platform(desc.platform),
        annotations={
            k: v
            for k, v in annotations.items()
            if type(k) is str and type(v) is str and k != REF_NAME
        },
        artifact_type=desc.artifact_type if _media_type(desc.artifact_type) else None,
        urls=tuple(u for u in desc.urls if type(u) is str) if isinstance(desc.urls, tuple) else (),
    )
    return IndexEntry(clean, tag)


def _media_type(value: object) -> bool:
    return type(value) is str and _MEDIA_TYPE.fullmatch(value) is not None


def _platform(platform: Platform | None) -> Platform | None:
    if not isinstance(platform, Platform):
        return None
    os_name, arch, variant = platform.os, platform.architecture, platform.variant
    if type(os_name) is not str or type(arch) is not str or not os_name or not arch:
        return None
    if variant is not None and (type(variant) is not str or not variant):
        return Platform(os_name, arch)
    return platform


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
