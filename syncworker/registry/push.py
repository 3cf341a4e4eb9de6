"""Uploads, for tests and benchmarks: a monolithic blob upload and a manifest PUT."""

from __future__ import annotations

from urllib.parse import urljoin

from syncworker.errors import NotFoundError, RegistryError
from syncworker.oci import Digest
from syncworker.registry import paths
from syncworker.registry.transport import ERROR_BODY_CAP, Transport

__all__ = ["push_blob", "push_manifest"]


def push_blob(t: Transport, repo: str, digest: Digest, data: bytes) -> None:
    """HEAD (skip if present), then POST + PUT (spec.md "POST then PUT")."""
    scope = paths.push_scope(repo)
    blob_path = paths.repo_path(repo, "blobs", str(digest))
    try:
        t.fetch("HEAD", blob_path, scope=scope, cap=0)
        return
    except NotFoundError:
        pass
    started = t.fetch(
        "POST", paths.repo_path(repo, "blobs", "uploads", ""), scope=scope, cap=ERROR_BODY_CAP
    )
    location = started.headers.get("Location")
    if not location:
        raise RegistryError(
            "POST",
            paths.repo_path(repo, "blobs", "uploads", ""),
            started.status,
            detail="upload started without a Location",
        )
    t.fetch(
        "PUT",
        urljoin(started.url, location),
        scope=scope,
        cap=ERROR_BODY_CAP,
        params=[("digest", str(digest))],
        headers={"Content-Type": "application/octet-stream"},
        data=data,
    )


def push_manifest(t: Transport, repo: str, ref: str, raw: bytes, media_type: str) -> None:
    t.fetch(
        "PUT",
        paths.repo_path(repo, "manifests", paths.reference(ref)),
        scope=paths.push_scope(repo),
        cap=ERROR_BODY_CAP,
        headers={"Content-Type": media_type},
        data=raw,
    )
