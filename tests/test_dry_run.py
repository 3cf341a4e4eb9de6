"""``syncworker sync --dry-run`` against the real ``docker-registry``: the plan per repository
(copy, prune, leave, bytes to fetch), made of tag lists, HEADs and manifest GETs only, and
nothing written to the store."""

from __future__ import annotations

import os
from pathlib import Path

import requests

from syncworker.cli.units import human_size
from syncworker.engine.images import MAX_DEPTH
from tests.support.images import make_image, make_layer
from tests.support.mirror import layout_tags, run_sync, write_sync_config
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.test_engine_walker import nested


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory of the store with its size and mtime."""
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(directory, name)
            found = os.stat(path)
            out[os.path.relpath(path, root)] = (found.st_size, found.st_mtime_ns)
    return out


def _requests(server: RegistryServer) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    for key, value in server.metrics().items():
        counts[(key.handler, key.method)] = counts.get((key.handler, key.method), 0) + value
    return counts


def test_dry_run_plans_without_fetching_blobs_or_writing(
    registry: RegistryServer, tmp_path: Path
) -> None:
    repo = "dryrun/app"
    base = [make_layer(("dryrun", "shared"))]
    kept = make_image(("dryrun", "kept"), base=base, layers=1)
    gone = make_image(("dryrun", "gone"), layers=1)
    push_image(registry.url, repo, "kept", kept)
    push_image(registry.url, repo, "gone", gone)
    root = tmp_path / "store"
    registries = [{"urls": [registry.url], "content": [{"prefix": "dryrun/**"}], "prune": True}]
    config = write_sync_config(tmp_path, root, registries)
    assert run_sync(config).code == 0

    # Upstream: "gone" deleted, "moved" new on the shared base layer (already in the
    # store, so free), "fresh" entirely new.
    requests.delete(f"{registry.url}/v2/{repo}/manifests/{gone.digest}", timeout=10)
    moved = make_image(("dryrun", "moved"), base=base, layers=1)
    fresh = make_image(("dryrun", "fresh"), layers=2)
    push_image(registry.url, repo, "moved", moved)
    push_image(registry.url, repo, "fresh", fresh)
    moved_bytes = sum(b.size for b in moved.blobs if b not in base)
    blobs = len(fresh.blobs) + len(moved.blobs) - len(base)
    fresh_bytes = sum(b.size for b in fresh.blobs)

    files, before = _snapshot(root), _requests(registry)
    run = run_sync(config, "--dry-run")
    assert run.code == 0, run.output
    spent = {k: v - before.get(k, 0) for k, v in _requests(registry).items()}
    spent = {k: v for k, v in spent.items() if v}
    assert _snapshot(root) == files  # not a file added, removed or touched
    assert set(spent) <= {
        ("tags", "get"),
        ("manifest", "head"),
        ("manifest", "get"),
        ("catalog", "get"),
    }
    assert spent[("manifest", "get")] == 2  # the two new tags' manifests; no blob, ever
    assert "dryrun/app -> dryrun/app" in run.stdout
    lines = run.stdout.splitlines()
    assert (
        f"  copy: fresh ({human_size(fresh_bytes)}), moved ({human_size(moved_bytes)})" in lines
    ), run.stdout
    assert "  prune: gone" in lines and "  leave: kept" in lines
    total = human_size(fresh_bytes + moved_bytes)
    assert f"2 tags to copy ({blobs} blobs, {total} to fetch)" in run.stdout
    # stderr is for progress and errors: the plan is not printed there a second time.
    assert "dryrun/app" not in run.stderr and "to copy" not in run.stderr, run.stderr

    # The plan is what the run then does.
    done = run_sync(config)
    assert done.code == 0, done.output
    assert f"2 images copied, 1 unchanged, {blobs} blobs fetched" in done.stdout
    assert sorted(layout_tags(root)[repo]) == ["fresh", "kept", "moved"]


def test_a_dry_run_names_on_stderr_only_what_it_could_not_plan(
    registry: RegistryServer, tmp_path: Path
) -> None:
    push_image(registry.url, "dryfail/fine", "v1", make_image(("dryfail", "fine")))
    too_deep = nested(make_image(("dryfail", "deep")), MAX_DEPTH)
    push_image(registry.url, "dryfail/deep", "v1", too_deep)
    registries = [{"urls": [registry.url], "content": [{"prefix": "dryfail/**"}]}]
    run = run_sync(write_sync_config(tmp_path, tmp_path / "store", registries), "--dry-run")
    assert run.code == 1, run.output
    assert "dryfail/fine -> dryfail/fine" in run.stdout and "dryfail/deep" in run.stdout
    [line] = [line for line in run.stderr.splitlines() if "dryfail/" in line]
    assert "dryfail/deep: FAILED" in line, run.stderr


def test_a_dry_run_before_the_first_sync_leaves_no_store_behind(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """The store's root does not exist yet: the dry run plans everything as new and creates
    nothing, not even the root or its directory of temporaries."""
    push_image(registry.url, "dryfirst/app", "v1", make_image("dryfirst"))
    root = tmp_path / "not-yet"
    registries = [{"urls": [registry.url], "content": [{"prefix": "dryfirst/**"}]}]
    config = write_sync_config(tmp_path, root, registries)
    run = run_sync(config, "--dry-run")
    assert run.code == 0, run.output
    assert "1 tags to copy" in run.stdout or "1 tag to copy" in run.stdout, run.stdout
    assert not root.exists()
