"""``GET /v2/<name>/referrers/<digest>`` (OCI distribution-spec 1.1 "Listing Referrers"):
an image index of the manifests whose ``subject`` is ``digest``, filtered by
``artifactType`` when asked (then ``OCI-Filters-Applied: artifactType``).

The mirror stores referrers untagged in ``index.json`` (the engine's rule), so those are
the candidates, with any tagged entry that names an ``artifactType``; each is parsed once
per process (manifests are addressed by content).
"""

from __future__ import annotations

import logging
from typing import Any

from syncworker.errors import StoreError
from syncworker.oci import Digest, Manifest
from syncworker.oci.mediatypes import OCI_INDEX
from syncworker.serve.context import Served, parse_digest
from syncworker.serve.messages import Request, Response, json_response
from syncworker.store import IndexEntry

__all__ = ["list_referrers"]

log = logging.getLogger(__name__)


def list_referrers(served: Served, request: Request, name: str, digest_text: str) -> Response:
    subject = parse_digest(digest_text)
    artifact_type = request.param("artifactType")
    if served.filler is not None and served.filler.maps(name):
        served.filler.fill_referrers(name, subject, artifact_type)
    found: list[dict[str, Any]] = []
    seen = set()
    for entry in served.store.index(name):
        digest = entry.descriptor.digest
        if digest in seen or not _candidate(entry):
            continue
        seen.add(digest)
        manifest = _listed(served, name, digest)
        if manifest is None or manifest.subject is None or manifest.subject.digest != subject:
            continue
        if artifact_type is not None and manifest.artifact_type != artifact_type:
            continue
        found.append(_descriptor(manifest))
    headers = {"Content-Type": OCI_INDEX}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}
    return json_response(index, headers=headers)


def _listed(served: Served, name: str, digest: Digest) -> Manifest | None:
    """The manifest an ``index.json`` entry names; None, logged, when it is absent from the
    store (pruned and collected since the index was read): the listing answers the rest.
    A store that fails to read a manifest it holds is an error, not an absent referrer."""
    try:
        return served.manifest(name, digest)
    except StoreError:
        if served.store.blob_size(name, digest) is not None:
            raise
    log.warning("referrers of %s: listed manifest %s is absent from the store; left out",
                name, digest)  # fmt: skip
    return None


def _candidate(entry: IndexEntry) -> bool:
    """Untagged and not a platform's child of an index, or tagged with an artifactType."""
    desc = entry.descriptor
    if entry.tag is None:
        return desc.platform is None
    return desc.artifact_type is not None


def _descriptor(manifest: Manifest) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mediaType": manifest.media_type,
        "digest": str(manifest.digest),
        "size": manifest.size,
    }
    if manifest.artifact_type:
        out["artifactType"] = manifest.artifact_type
    if manifest.annotations:
        out["annotations"] = dict(manifest.annotations)
    return out
