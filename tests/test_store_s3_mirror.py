"""``syncworker sync`` into S3: the same result as into a directory, and a no-op
re-run that creates or rewrites no object.

The bucket has versioning on, so every PutObject, CopyObject or completed upload adds an
object version: counting versions proves "nothing was written" without timing.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.corpus import Corpus
from tests.support.mirror import (
    SKOPEO_READABLE,
    check_store,
    layout_tags,
    mirrored_digest,
    run_sync,
    write_sync_config,
)
from tests.support.registry_server import RegistryServer
from tests.support.s3_server import S3Server, s3_server, s3rver_server

__all__ = ["s3_server", "s3rver_server"]  # the session fixtures, imported for pytest

Seeded = tuple[RegistryServer, Corpus]


# skopeo 1.9 (which mirrored_digest reads with) skips index.json entries of Docker types.


def s3_config(tmp_path: Path, upstream: str, driver: dict[str, Any]) -> Path:
    path = write_sync_config(
        tmp_path, tmp_path / "unused", [{"urls": [upstream]}], settings=SKOPEO_READABLE
    )
    doc = yaml.safe_load(path.read_text())
    doc["storage"] = {"rootDirectory": driver["rootdirectory"], "storageDriver": driver}
    path.write_text(yaml.safe_dump(doc))
    return path


def download(server: S3Server, bucket: str, prefix: str, target: Path) -> None:
    client = server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            path = target / obj["Key"][len(prefix) :]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())


def layout_files(root: Path) -> dict[str, bytes]:
    """Every file of the layouts under ``root`` except the stores' own bookkeeping, which
    is all hidden (``.tmp/``, ``.digests/``, locks): no repository name starts with a dot."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def object_versions(server: S3Server, bucket: str) -> int:
    pages = server.client().get_paginator("list_object_versions").paginate(Bucket=bucket)
    return sum(len(page.get("Versions", [])) for page in pages)


def test_mirror_into_s3_equals_mirror_into_a_directory(
    seeded_registry: Seeded, s3_server: S3Server, tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    bucket = s3_server.new_bucket()
    try:
        s3_server.client().put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
        )
        local = tmp_path / "local"
        local_config = write_sync_config(
            tmp_path, local, [{"urls": [server.url]}], settings=SKOPEO_READABLE
        )
        assert run_sync(local_config).code == 0
        config = s3_config(tmp_path, server.url, s3_server.driver(bucket, "/mirror"))
        first = run_sync(config)
        assert first.code == 0, first.err + first.out

        copy = tmp_path / "from-s3"
        download(s3_server, bucket, "mirror/", copy)
        assert layout_tags(copy) == corpus.tags
        expected, got = layout_files(local), layout_files(copy)
        assert sorted(got) == sorted(expected)
        for name, data in got.items():  # blob by blob
            if "/blobs/" in name:
                assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1], name
            assert data == expected[name], name
        for repo, tags in corpus.tags.items():
            for tag, digest in tags.items():
                assert mirrored_digest(copy, repo, tag) == digest, f"{repo}:{tag}"

        versions = object_versions(s3_server, bucket)
        second = run_sync(config)
        assert second.code == 0, second.err + second.stdout
        assert object_versions(s3_server, bucket) == versions, "a no-op run wrote objects"
    finally:
        s3_server.drop(bucket)


def test_mirror_into_s3rver_equals_mirror_into_a_directory(
    seeded_registry: Seeded,
    s3rver_server: S3Server,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """s3rver implements neither ListMultipartUploads, AbortMultipartUpload, UploadPartCopy
    nor conditional writes: the mirror is whole all the same, and each call it lacks is
    named once in a warning (syncworker/store/s3optional.py)."""
    server, corpus = seeded_registry
    bucket = s3rver_server.new_bucket()
    try:
        local = tmp_path / "local"
        local_config = write_sync_config(
            tmp_path, local, [{"urls": [server.url]}], settings=SKOPEO_READABLE
        )
        assert run_sync(local_config).code == 0
        config = s3_config(tmp_path, server.url, s3rver_server.driver(bucket, "/mirror"))
        with caplog.at_level(logging.WARNING, logger="syncworker.store.s3optional"):
            first = run_sync(config)
        assert first.code == 0, first.output
        lacking = [r.getMessage() for r in caplog.records if r.name.endswith("s3optional")]
        for call in ("ListMultipartUploads", "If-None-Match / If-Match on PutObject"):
            assert sum(f"does not implement {call}:" in m for m in lacking) == 1, lacking

        copy = tmp_path / "from-s3rver"
        download(s3rver_server, bucket, "mirror/", copy)
        assert layout_tags(copy) == corpus.tags
        assert layout_files(copy) == layout_files(local)
        check_store(copy)
        second = run_sync(config)
        assert second.code == 0, second.output
        assert "0 blobs fetched" in second.output, second.output
    finally:
        s3rver_server.drop(bucket)
