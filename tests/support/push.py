"""Push generated images to a registry with plain `requests` (distribution-spec push flow).

Blobs: HEAD to skip what the repository has, else POST `/blobs/uploads/` then one monolithic
PUT `?digest=` ("Pushing a blob monolithically", POST then PUT). Manifests: children before
the index that lists them, by digest; then the manifest itself by tag (or digest).

Distribution 2.8 has no referrers API, so a manifest with a `subject` is also added to the
referrers tag-schema fallback, as oras and cosign do: the tag `sha256-<hex of subject>` holds
an OCI index listing the referrers (distribution-spec, "Pushing Manifests with Subject" and
"Referrers Tag Schema").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests

from tests.support.client import Credentials, registry_session
from tests.support.images import OCI_INDEX, Blob, Manifest, canonical_json, referrers_tag

__all__ = ["PushError", "PushResult", "push_blob", "push_image", "push_manifest", "referrers_index"]

TIMEOUT = 60.0


class PushError(RuntimeError):
    """The registry refused part of a push; the message carries status and body."""


@dataclass
class PushResult:
    digest: str
    media_type: str
    blobs_uploaded: int = 0
    blobs_skipped: int = 0


def push_image(
    registry_url: str,
    repo: str,
    tag: str | None,
    image: Manifest,
    auth: Credentials | None = None,
    *,
    session: requests.Session | None = None,
    verify: bool | str = True,
) -> PushResult:
    """Push `image` (its children, blobs, referrers fallback) to `repo`, tagged `tag`."""
    if session is None:
        with registry_session(auth, verify=verify) as own:  # closed: no ResourceWarning
            return push_image(registry_url, repo, tag, image, session=own)
    http = session
    base = registry_url.rstrip("/") + f"/v2/{repo}"
    result = PushResult(image.digest, image.media_type)
    for manifest in image.walk():
        for blob in manifest.blobs:
            uploaded = _push_blob(http, base, blob)
            result.blobs_uploaded += uploaded
            result.blobs_skipped += not uploaded
        reference = tag if manifest is image and tag else manifest.digest
        _put_manifest(http, base, reference, manifest.raw, manifest.media_type, manifest.digest)
        if manifest.subject:
            _add_referrer(http, base, manifest)
    return result


def push_blob(registry_url: str, repo: str, blob: Blob, auth: Credentials | None = None) -> bool:
    """Upload one blob to `repo` unless it is there; True when it was uploaded."""
    with registry_session(auth) as http:
        return _push_blob(http, registry_url.rstrip("/") + f"/v2/{repo}", blob)


def push_manifest(
    registry_url: str,
    repo: str,
    reference: str,
    raw: bytes,
    media_type: str,
    auth: Credentials | None = None,
    *,
    verify: bool | str = True,
) -> None:
    """PUT manifest bytes as they are (children and blobs must be there already)."""
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    with registry_session(auth, verify=verify) as http:
        base = registry_url.rstrip("/") + f"/v2/{repo}"
        _put_manifest(http, base, reference, raw, media_type, digest)


def _check(response: requests.Response, expected: set[int], what: str) -> None:
    if response.status_code not in expected:
        raise PushError(f"{what}: HTTP {response.status_code} {response.text[:500]}")


def _push_blob(http: requests.Session, base: str, blob: Blob) -> bool:
    """Upload `blob` unless the repository has it; True when it was uploaded."""
    head = http.head(f"{base}/blobs/{blob.digest}", timeout=TIMEOUT)
    if head.status_code == 200:
        return False
    _check(head, {404}, f"HEAD blob {blob.digest}")
    start = http.post(f"{base}/blobs/uploads/", timeout=TIMEOUT)
    _check(start, {202}, "start upload")
    location = _with_query(urljoin(base, start.headers["Location"]), digest=blob.digest)
    done = http.put(
        location,
        data=blob.data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=TIMEOUT,
    )
    _check(done, {201}, f"PUT blob {blob.digest}")
    return True


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def _put_manifest(
    http: requests.Session, base: str, reference: str, raw: bytes, media_type: str, digest: str
) -> None:
    response = http.put(
        f"{base}/manifests/{reference}",
        data=raw,
        headers={"Content-Type": media_type},
        timeout=TIMEOUT,
    )
    _check(response, {201}, f"PUT manifest {reference}")
    returned = response.headers.get("Docker-Content-Digest")
    if returned and returned != digest:
        raise PushError(f"registry stored {reference} as {returned}, expected {digest}")


def referrers_index(http: requests.Session, base: str, subject_digest: str) -> dict[str, Any]:
    """The current tag-schema referrers index of `subject_digest` (empty when absent)."""
    response = http.get(
        f"{base}/manifests/{referrers_tag(subject_digest)}",
        headers={"Accept": OCI_INDEX},
        timeout=TIMEOUT,
    )
    if response.status_code == 404:
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    _check(response, {200}, f"GET referrers tag of {subject_digest}")
    index: dict[str, Any] = json.loads(response.content)
    return index


def _add_referrer(http: requests.Session, base: str, manifest: Manifest) -> None:
    """Add `manifest` to its subject's referrers tag (read, add unless present, write)."""
    assert manifest.subject is not None
    subject_digest = manifest.subject["digest"]
    index = referrers_index(http, base, subject_digest)
    if any(d.get("digest") == manifest.digest for d in index["manifests"]):
        return
    index["manifests"].append(manifest.referrer_descriptor())
    raw = canonical_json(index)
    tag = referrers_tag(subject_digest)
    response = http.put(
        f"{base}/manifests/{tag}", data=raw, headers={"Content-Type": OCI_INDEX}, timeout=TIMEOUT
    )
    _check(response, {201}, f"PUT referrers tag {tag}")
