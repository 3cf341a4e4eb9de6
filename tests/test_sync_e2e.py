"""``syncworker sync`` against a real distribution registry holding the standard corpus.

Every check reads the store with skopeo or the upstream's own request counters, never
only with syncworker's code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.support.corpus import Corpus
from tests.support.mirror import (
    SKOPEO_READABLE,
    layout_tags,
    mirrored_digest,
    run_sync,
    write_sync_config,
)
from tests.support.registry_server import RegistryServer

Seeded = tuple[RegistryServer, Corpus]


# skopeo 1.9 (which mirrored_digest reads with) skips index.json entries of Docker types.


def _blob_path(root: Path, repo: str, digest: str) -> Path:
    algorithm, _, hexpart = digest.partition(":")
    return root / repo / "blobs" / algorithm / hexpart


def _manifest(root: Path, repo: str, digest: str) -> dict[str, object]:
    value: dict[str, object] = json.loads(_blob_path(root, repo, digest).read_bytes())
    return value


def test_mirror_is_byte_identical_and_readable_by_skopeo(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    root = tmp_path / "store"
    config = write_sync_config(tmp_path, root, [{"urls": [server.url]}], settings=SKOPEO_READABLE)
    run = run_sync(config)
    assert run.code == 0, run.stderr + run.stdout
    assert layout_tags(root) == corpus.tags
    for repo, tags in corpus.tags.items():
        for tag, digest in tags.items():
            assert mirrored_digest(root, repo, tag) == digest, f"{repo}:{tag}"
    for repo, digests in corpus.manifests.items():
        for digest in digests:  # untagged referrers (the SBOM, its signature) too
            raw = _blob_path(root, repo, digest).read_bytes()
            assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest


def test_second_run_asks_one_head_per_tag_and_downloads_nothing(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    config = write_sync_config(tmp_path, tmp_path / "store", [{"urls": [server.url]}])
    assert run_sync(config).code == 0
    before = server.metrics()
    second = run_sync(config)
    after = server.metrics()
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert second.code == 0
    by_handler: dict[tuple[str, str], float] = {}
    for key, count in delta.items():
        by_handler[(key.handler, key.method)] = by_handler.get((key.handler, key.method), 0) + count
    tag_count = sum(len(tags) for tags in corpus.tags.values())
    assert by_handler == {
        ("catalog", "get"): 1,
        ("tags", "get"): len(corpus.tags),
        ("manifest", "head"): tag_count,
    }
    assert f"0 images copied, {tag_count} unchanged" in second.stdout


def test_shared_blobs_fetched_once_and_hard_linked(seeded_registry: Seeded, tmp_path: Path) -> None:
    server, corpus = seeded_registry
    root = tmp_path / "store"
    before = server.blob_gets()
    assert run_sync(write_sync_config(tmp_path, root, [{"urls": [server.url]}])).code == 0
    fetched = server.blob_gets() - before
    foreign = corpus["foreign"].manifest.json["layers"][0]["digest"]
    unique = set().union(*corpus.blobs.values()) - {foreign}
    assert fetched == len(unique)
    base = corpus["busybox"].manifest.json["layers"][0]["digest"]
    inodes = {
        _blob_path(root, repo, base).stat().st_ino
        for repo in ("library/busybox", "library/alpine", "team/sub/app")
    }
    assert len(inodes) == 1


def test_foreign_layers_are_not_fetched(seeded_registry: Seeded, tmp_path: Path) -> None:
    server, corpus = seeded_registry
    root = tmp_path / "store"
    assert run_sync(write_sync_config(tmp_path, root, [{"urls": [server.url]}])).code == 0
    layers = corpus["foreign"].manifest.json["layers"]
    assert layers[0]["mediaType"].endswith("foreign.diff.tar.gzip")
    assert not _blob_path(root, "windows/foreign", layers[0]["digest"]).exists()
    for layer in layers[1:]:
        assert _blob_path(root, "windows/foreign", layer["digest"]).exists()


def test_content_rules_select_rename_and_filter_tags(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    root = tmp_path / "store"
    content = [
        {
            "prefix": "library/alpine",
            "tags": {"regex": "^[0-9]", "excludeRegex": "^3\\.18$"},
            "destination": "mirror",
            "stripPrefix": True,
        },
        {"prefix": "team/**", "destination": "/copies"},
        {"prefix": "library/busybox", "tags": {"semver": True}},
    ]
    run = run_sync(write_sync_config(tmp_path, root, [{"urls": [server.url], "content": content}]))
    assert run.code == 0, run.stdout
    tags = layout_tags(root)
    alpine = corpus.tags["library/alpine"]
    kept = {"3.19", "3.20", "1.0.0", "1.2.0", "2.0.0"}
    signature_tags = {t for t in alpine if t.startswith("sha256-")}
    assert set(tags["mirror"]) == kept | signature_tags
    assert tags["copies/team/sub/app"] == corpus.tags["team/sub/app"]
    # zot's semver check is lenient (Masterminds): "1.36" passes, as it does in zot.
    assert tags["library/busybox"] == corpus.tags["library/busybox"]
    # zot strips the whole (static) prefix; repos matched by no rule are left alone.
    assert set(tags) == {"mirror", "copies/team/sub/app", "library/busybox"}


def test_platform_filter_keeps_index_digest_and_matching_children_only(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    root = tmp_path / "store"
    config = write_sync_config(
        tmp_path,
        root,
        [{"urls": [server.url], "platforms": ["linux/arm64"], "content": [{"prefix": "multi/**"}]}],
        settings=SKOPEO_READABLE,
    )
    assert run_sync(config).code == 0
    for name, repo in (("oci_index", "multi/oci"), ("docker_list", "multi/docker")):
        index = corpus[name].manifest
        assert mirrored_digest(root, repo, "latest") == index.digest
        for child in index.json["manifests"]:
            present = _blob_path(root, repo, child["digest"]).exists()
            assert present == (child["platform"]["architecture"] == "arm64"), child["platform"]


def test_referrers_and_signatures_follow_their_images(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    root = tmp_path / "store"
    content = [{"prefix": "library/alpine", "tags": {"regex": "^3\\.19$"}}]
    assert (
        run_sync(
            write_sync_config(tmp_path, root, [{"urls": [server.url], "content": content}])
        ).code
        == 0
    )
    signed = corpus["alpine_3.19"].digest
    sbom, sbom_signature = corpus["sbom"].digest, corpus["sbom_signature"].digest
    tags = layout_tags(root)["library/alpine"]
    assert tags["3.19"] == signed
    assert tags[f"sha256-{signed[7:]}.sig"] == corpus["cosign_signature"].digest
    # Referrers tag schema of the image and, recursively, of its SBOM.
    assert f"sha256-{signed[7:]}" in tags and f"sha256-{sbom[7:]}" in tags
    for digest in (sbom, sbom_signature):
        assert _manifest(root, "library/alpine", digest)["subject"]
    untagged = {
        e["digest"]
        for e in json.loads((root / "library/alpine/index.json").read_text())["manifests"]
        if "annotations" not in e or "org.opencontainers.image.ref.name" not in e["annotations"]
    }
    assert {sbom, sbom_signature} <= untagged  # listed, so a serving zot finds referrers
    assert set(tags) == {
        "3.19",
        f"sha256-{signed[7:]}.sig",
        f"sha256-{signed[7:]}",
        f"sha256-{sbom[7:]}",
    }


def test_only_signed_skips_images_without_signature(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    root = tmp_path / "store"
    config = write_sync_config(
        tmp_path,
        root,
        [{"urls": [server.url], "onlySigned": True, "content": [{"prefix": "library/**"}]}],
    )
    assert run_sync(config).code == 0
    tags = layout_tags(root)
    assert "library/busybox" not in tags
    plain = {t for t in tags["library/alpine"] if not t.startswith("sha256-")}
    assert plain == {"3.19"}


def test_explicit_repo_list_without_catalog(seeded_registry: Seeded, tmp_path: Path) -> None:
    server, corpus = seeded_registry
    root = tmp_path / "store"
    before = server.request_count(handler="catalog")
    config = write_sync_config(
        tmp_path, root, [{"urls": [server.url], "repos": ["docker/hello", "multi/oci"]}]
    )
    assert run_sync(config).code == 0
    assert server.request_count(handler="catalog") == before
    assert set(layout_tags(root)) == {"docker/hello", "multi/oci"}


@pytest.mark.parametrize("mode", ["oci", "preserve"])
def test_docker_media_types_in_index(seeded_registry: Seeded, tmp_path: Path, mode: str) -> None:
    server, corpus = seeded_registry
    root = tmp_path / "store"
    config = write_sync_config(
        tmp_path,
        root,
        [{"urls": [server.url], "content": [{"prefix": "docker/**"}]}],
        settings={"layoutMediaTypes": mode},
    )
    assert run_sync(config).code == 0
    entry = json.loads((root / "docker/hello/index.json").read_text())["manifests"][0]
    upstream_type = corpus["docker_image"].media_type
    expected = upstream_type if mode == "preserve" else "application/vnd.oci.image.manifest.v1+json"
    assert entry["mediaType"] == expected
    assert entry["digest"] == corpus["docker_image"].digest


def test_sync_disabled_in_config_does_nothing(seeded_registry: Seeded, tmp_path: Path) -> None:
    server, _ = seeded_registry
    before = server.request_count()
    run = run_sync(
        write_sync_config(
            tmp_path, tmp_path / "store", [{"urls": [server.url]}], sync={"enable": False}
        )
    )
    assert run.code == 0 and "enable is false" in run.stderr
    assert server.request_count() == before
    assert not (tmp_path / "store").exists()


def test_two_upstream_repositories_never_share_a_destination(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    """Literal names: refused by the config itself (the run's own refusal, and globs, are
    in tests/test_claims.py)."""
    server, _ = seeded_registry
    root = tmp_path / "store"
    content = [
        {"prefix": "library/alpine", "destination": "same", "stripPrefix": True},
        {"prefix": "library/busybox", "destination": "same", "stripPrefix": True},
    ]
    config = write_sync_config(tmp_path, root, [{"urls": [server.url], "content": content}])
    run = run_sync(config)
    assert run.code == 2
    assert "library/busybox into 'same'" in run.output
    assert not root.exists()
