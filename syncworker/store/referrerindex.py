"""The referrers tag-schema index a registry destination without the referrers API keeps.

spec.md "Pushing Manifests with Subject": when the registry does not answer the referrers
API, the client maintains the index under the subject's fallback tag. A referrer pushed
untagged is added to it; entries other tools wrote there are kept.
"""

from __future__ import annotations

import json
from typing import Any

from syncworker.errors import NotFoundError
from syncworker.oci import Descriptor, Manifest
from syncworker.oci.mediatypes import OCI_INDEX
from syncworker.registry.pushclient import PushClient
from syncworker.registry.referrers import fallback_tag

__all__ = ["list_referrer"]


def list_referrer(client: PushClient, repo: str, manifest: Manifest) -> bool:
    """Add ``manifest`` to its subject's tag-schema index, where the registry has no
    referrers API; whether the index changed."""
    subject = manifest.subject
    if subject is None or client.referrers_api(repo, subject.digest) is not None:
        return False
    tag = fallback_tag(subject.digest)
    listed = _fallback_index(client, repo, tag)
    if any(d.get("digest") == str(manifest.digest) for d in listed["manifests"]):
        return False
    listed["manifests"].append(_referrer_descriptor(manifest))
    raw = json.dumps(listed, separators=(",", ":")).encode()
    client.put_manifest(repo, tag, raw, OCI_INDEX)
    return True


def _fallback_index(client: PushClient, repo: str, tag: str) -> dict[str, Any]:
    """The subject's tag-schema index as it is (other tools' entries kept), or a new one
    if the tag is absent or holds something that is no index."""
    try:
        raw, manifest = client.get_manifest(repo, tag)
    except NotFoundError:
        manifest = None
    if manifest is None or not manifest.is_index:
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    doc: dict[str, Any] = json.loads(raw)
    doc.setdefault("manifests", [])
    return doc


def _referrer_descriptor(manifest: Manifest) -> dict[str, Any]:
    """spec.md "Listing Referrers": the referrer's type, digest, size, annotations, and
    its artifactType, or failing that its config's mediaType (whatever it is)."""
    config = manifest.blobs[0].media_type if manifest.blobs else None
    desc = Descriptor(
        manifest.media_type,
        manifest.digest,
        manifest.size,
        annotations=manifest.annotations,
        artifact_type=manifest.artifact_type or config,
    )
    return desc.to_json()
