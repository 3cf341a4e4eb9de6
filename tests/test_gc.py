"""``syncworker gc``: blobs no ``index.json`` reaches are removed, on a directory and on S3
(moto), sparing young blobs and repositories a sync holds, and not held back by children a
``platforms`` filter left out; ``--dry-run`` removes nothing.
The garbage is made the way it appears in production: a tag deleted upstream and pruned."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import requests
import yaml

import syncworker.cli.gc
from syncworker.cli import main
from syncworker.cli.units import human_size
from syncworker.coord import Coordinator
from tests.support.images import Manifest, make_image, make_index, make_layer
from tests.support.mirror import SyncRun, check_store, layout_tags, run_sync, write_sync_config
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.support.s3_server import S3Server, s3_server

__all__ = ["s3_server"]  # the session fixture, imported for pytest

REPO = "gc/app"


def run_gc(config: Path, *extra: str) -> SyncRun:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["gc", "-c", str(config), *extra])
    return SyncRun(code, out.getvalue(), err.getvalue())


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        os.path.relpath(os.path.join(d, n), root): (s.st_size, s.st_mtime_ns)
        for d, _, names in os.walk(root)
        for n in names
        if (s := os.stat(os.path.join(d, n)))
    }


def _garbage(registry: RegistryServer, config: Path) -> tuple[Manifest, Manifest, int]:
    """Mirror two images sharing a layer, delete one upstream, prune it: its manifest,
    config and own layer are garbage; the shared layer is not."""
    base = [make_layer(("gc", "shared"))]
    kept = make_image(("gc", "kept", str(config)), base=base, layers=1)
    gone = make_image(("gc", "gone", str(config)), base=base, layers=1)
    push_image(registry.url, REPO, "kept", kept)
    push_image(registry.url, REPO, "gone", gone)
    assert run_sync(config).code == 0
    url = f"{registry.url}/v2/{REPO}/manifests/{gone.digest}"
    assert requests.delete(url, timeout=10).status_code == 202
    run = run_sync(config)
    assert run.code == 0 and f"{REPO}: gone (" in run.stdout, run.output
    size = gone.size + sum(b.size for b in gone.blobs if b not in base)
    return kept, gone, size


def _registries(registry: RegistryServer) -> list[dict[str, Any]]:
    return [{"urls": [registry.url], "content": [{"prefix": "gc/**"}], "prune": True}]


def test_gc_removes_what_no_index_reaches(registry: RegistryServer, tmp_path: Path) -> None:
    root = tmp_path / "store"
    config = write_sync_config(tmp_path, root, _registries(registry))
    kept, gone, size = _garbage(registry, config)
    garbage = {gone.digest, *(b.digest for b in gone.blobs)} - {b.digest for b in kept.blobs}

    young = run_gc(config)  # the default grace (24h) spares blobs written just now
    assert young.code == 0 and "gc: removed 0 blobs" in young.stdout, young.output
    assert f"; 3 blobs ({human_size(size)}) that no index.json reaches kept for --grace" in (
        young.stdout
    )

    files = _files(root)
    dry = run_gc(config, "--dry-run", "--grace", "0s")
    assert dry.code == 0, dry.output
    assert _files(root) == files
    listed = {line.split("@")[1].split(" ")[0] for line in dry.stdout.splitlines() if "@" in line}
    assert listed == garbage
    assert f"gc: would remove 3 blobs ({human_size(size)}) of 1 repository;" in dry.stdout

    run = run_gc(config, "--grace", "0s")
    assert run.code == 0, run.output
    assert f"gc: removed 3 blobs ({human_size(size)}) of 1 repository;" in run.stdout
    blobs = root / REPO / "blobs" / "sha256"
    assert {f"sha256:{p.name}" for p in blobs.iterdir()} == {kept.digest} | {
        b.digest for b in kept.blobs
    }
    assert check_store(root)[REPO] >= {kept.digest}  # what is left reads whole
    assert layout_tags(root)[REPO] == {"kept": kept.digest}
    assert "gc: removed 0 blobs" in run_gc(config, "--grace", "0s").stdout


def test_gc_leaves_a_repository_a_sync_holds(
    registry: RegistryServer, private_redis: RedisServer, tmp_path: Path, monkeypatch: Any
) -> None:
    root = tmp_path / "store"
    settings = {"redis": private_redis.url}
    config = write_sync_config(tmp_path, root, _registries(registry), settings=settings)
    _garbage(registry, config)
    files = _files(root)
    monkeypatch.setattr(syncworker.cli.gc, "GC_REPO_WAIT", 0.2)
    coord = Coordinator.from_url(private_redis.url)
    with coord.repo_lock(REPO):  # as a sync of this repository, on any worker, holds it
        run = run_gc(config, "--grace", "0s")
    assert run.code == 1
    assert f"SKIPPED {REPO}:" in run.stdout and "gc: removed 0 blobs" in run.stdout
    assert _files(root) == files
    assert "gc: removed 3 blobs" in run_gc(config, "--grace", "0s").stdout


def test_gc_skips_a_repository_it_cannot_read_whole(
    registry: RegistryServer, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    config = write_sync_config(tmp_path, root, _registries(registry))
    kept, _, _ = _garbage(registry, config)
    manifest = root / REPO / "blobs" / "sha256" / kept.digest.split(":")[1]
    manifest.unlink()  # the kept image's manifest: its blobs can no longer be known
    files = _files(root)
    run = run_gc(config, "--grace", "0s")
    assert run.code == 1 and f"SKIPPED {REPO}:" in run.stdout
    assert _files(root) == files


def test_gc_refuses_a_short_grace_and_a_registry_destination(
    registry: RegistryServer, tmp_path: Path
) -> None:
    entry = {**_registries(registry)[0], "syncTimeout": "2h"}
    config = write_sync_config(tmp_path, tmp_path / "store", [entry])
    run = run_gc(config, "--grace", "1h")
    assert run.code == 2 and "shorter than the longest syncTimeout" in run.stderr
    settings = {"destination": {"url": "http://127.0.0.1:1"}}  # never reached
    config = write_sync_config(tmp_path, tmp_path / "x", [entry], settings=settings)
    run = run_gc(config)
    assert run.code == 2 and "gc applies to OCI-layout stores" in run.stderr


def test_gc_on_s3(registry: RegistryServer, s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    try:
        config = write_sync_config(tmp_path, tmp_path / "unused", _registries(registry))
        doc = yaml.safe_load(config.read_text())
        driver = s3_server.driver(bucket, "/mirror")
        doc["storage"] = {"rootDirectory": "/mirror", "storageDriver": driver}
        config.write_text(yaml.safe_dump(doc))
        kept, gone, size = _garbage(registry, config)
        dry = run_gc(config, "--dry-run", "--grace", "0s")
        assert f"gc: would remove 3 blobs ({human_size(size)})" in dry.stdout, dry.output
        refused = run_gc(config, "--grace", "0s")  # no Redis: nothing keeps syncs out
        assert refused.code == 2 and "configure Redis, or stop every sync" in refused.stderr
        run = run_gc(config, "--grace", "0s", "--force")
        assert f"gc: removed 3 blobs ({human_size(size)})" in run.stdout, run.output
        client = s3_server.client()
        prefix = f"mirror/{REPO}/blobs/sha256/"
        keys = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        left = {f"sha256:{k['Key'][len(prefix) :]}" for k in keys}
        assert left == {kept.digest} | {b.digest for b in kept.blobs}
        assert gone.digest not in left
    finally:
        s3_server.drop(bucket)


def test_gc_collects_a_repository_whose_indexes_lack_filtered_children(
    registry: RegistryServer, tmp_path: Path
) -> None:
    repo, root = "gc/platforms", tmp_path / "store"
    entry = {"urls": [registry.url], "content": [{"prefix": repo}], "prune": True}
    config = write_sync_config(tmp_path, root, [{**entry, "platforms": ["linux/arm64"]}])
    index = make_index(("gc", "platforms"), layers=1)
    gone = make_image(("gc", "platforms-gone", str(config)), layers=1)
    push_image(registry.url, repo, "multi", index)
    push_image(registry.url, repo, "gone", gone)
    assert run_sync(config).code == 0
    assert requests.delete(f"{registry.url}/v2/{repo}/manifests/{gone.digest}", timeout=10).ok
    assert run_sync(config).code == 0
    amd64, arm64 = (root / repo / "blobs" / c.digest.replace(":", "/") for c in index.children)
    assert not amd64.exists() and arm64.exists()  # the platforms filter left amd64 out
    run = run_gc(config, "--grace", "0s")
    assert run.code == 0 and "gc: removed 3 blobs" in run.stdout, run.output
    assert index.children[1].digest in check_store(root, platforms=["linux/arm64"])[repo]


def test_widening_platforms_fetches_the_new_children_so_gc_and_check_pass(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """An index mirrored for arm64 only, then ``platforms`` widened to everything: the
    next sync fetches the amd64 child of the unchanged index, so check finds the tree
    whole and gc collects the repository instead of skipping it."""
    repo, root = "gc/widened", tmp_path / "store"
    entry = {"urls": [registry.url], "content": [{"prefix": repo}], "prune": True}
    narrow = write_sync_config(tmp_path, root, [{**entry, "platforms": ["linux/arm64"]}])
    index = make_index(("gc", "widened"), layers=1)
    push_image(registry.url, repo, "multi", index)
    assert run_sync(narrow).code == 0
    amd64 = root / repo / "blobs" / index.children[0].digest.replace(":", "/")
    assert not amd64.exists()

    wide = write_sync_config(tmp_path, root, [entry])
    widened = run_sync(wide)
    assert widened.code == 0 and amd64.exists(), widened.output
    assert run_sync(wide).code == 0  # and the run after that is a no-op again
    assert main(["check", "-c", str(wide)]) == 0
    run = run_gc(wide, "--grace", "0s")
    assert run.code == 0 and "skipped" in run.stdout and "0 repositories skipped" in run.stdout
    assert {c.digest for c in index.children} <= check_store(root)[repo]


def test_gc_under_narrower_platforms_keeps_every_child_an_index_lists(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """gc run with a config whose ``platforms`` wants fewer children than the store's index
    holds (a config rolled back, or gc given another config than the workers'): the
    children present are kept, so the tree stays whole for the wider setting that stored it."""
    repo, root = "gc/narrowed", tmp_path / "store"
    entry = {"urls": [registry.url], "content": [{"prefix": repo}]}
    (tmp_path / "wide").mkdir()
    (tmp_path / "narrow").mkdir()
    wide = write_sync_config(tmp_path / "wide", root, [entry])
    narrow = write_sync_config(tmp_path / "narrow", root, [{**entry, "platforms": ["linux/arm64"]}])
    index = make_index(("gc", "narrowed"), layers=1)
    push_image(registry.url, repo, "multi", index)
    assert run_sync(wide).code == 0
    before = _files(root / repo)

    run = run_gc(narrow, "--grace", "0s")
    assert run.code == 0 and "gc: removed 0 blobs" in run.stdout, run.output
    assert _files(root / repo) == before
    assert main(["check", "-c", str(wide)]) == 0
    assert {c.digest for c in index.children} <= check_store(root)[repo]
