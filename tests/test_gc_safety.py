"""Deleting never breaks a tree: a manifest present in the store always has its whole tree.

Against the real ``docker-registry`` and real ``syncworker`` processes: a child manifest
left by a failed or killed sync keeps the old layer it needs through gc, and the next sync
that trusts that child indexes a whole tree; gc killed (SIGKILL) at several points of a
large collection leaves only blobs nothing refers to; gc beside a ``syncworker sync`` of
another process waits for it, with and without Redis (on S3 without Redis gc asks for
``--force``); gc failing part-way reports what it removed. ``check_store`` (the
tree-complete check all of this relies on) is shown to catch a deleted blob, listed or not.
"""

from __future__ import annotations

import hashlib
import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from syncworker.errors import StoreError
from syncworker.oci import Descriptor, Digest
from syncworker.store import IndexEntry, indexdoc
from syncworker.store.collect import collect
from syncworker.store.fs import FsStore
from tests.support.gc_pipe import gc_on_a_pipe
from tests.support.images import (
    OCI_MANIFEST,
    Blob,
    Manifest,
    make_artifact,
    make_image,
    make_index,
    make_layer,
)
from tests.support.mirror import check_store, layout_tags, run_sync, write_sync_config
from tests.support.ports import wait_until
from tests.support.push import push_image, push_manifest
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.support.s3_server import S3Server, s3_server
from tests.support.stalling_proxy import StallingProxy
from tests.test_check import run_check
from tests.test_gc import run_gc

__all__ = ["s3_server"]  # the session fixture, imported for pytest

# Blobs younger than this survive gc; the old layer is made older, the child a failed
# sync left is younger (it is written a second or so before gc runs).
GRACE = 4.0
WAIT_SECONDS = 60.0
SMALL = 256  # bytes per layer: the collection is about its count of blobs, not their size


def _config(tmp_path: Path, url: str, repo: str, **settings: Any) -> Path:
    registries = [{"urls": [url], "content": [{"prefix": repo}], "prune": True}]
    extra = {"settings": settings} if settings else {}
    return write_sync_config(tmp_path, tmp_path / "store", registries, **extra)


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository of its own per test: the registry is shared by the whole session."""
    return "safe/" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]


def _blob(root: Path, repo: str, digest: str) -> Path:
    return root / repo / "blobs" / "sha256" / digest.split(":")[1]


def _age(path: Path) -> float:
    info = path.stat()
    return time.time() - max(info.st_mtime, info.st_ctime)


def _delete(registry: RegistryServer, repo: str, digest: str) -> None:
    url = f"{registry.url}/v2/{repo}/manifests/{digest}"
    assert requests.delete(url, timeout=10).status_code == 202


def _start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "syncworker", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _old_garbage_layer(registry: RegistryServer, repo: str, config: Path, seed: str) -> Blob:
    """A layer mirrored with an image that was then deleted upstream and pruned: in the
    store, referred to by nothing listed."""
    layer = make_layer(("safe", "old", seed), size=SMALL)
    image = make_image(("safe", "old", seed), base=[layer], layers=0, layer_size=SMALL)
    push_image(registry.url, repo, "old", image)
    assert run_sync(config).code == 0
    _delete(registry, repo, image.digest)
    run = run_sync(config)
    assert run.code == 0 and f"{repo}: old (" in run.stdout, run.output
    return layer


def _index_over(layer: Blob, seed: str) -> tuple[Manifest, Manifest, Blob]:
    """An index of two images sharing ``layer``: the first child, and the own layer of the
    second (the one to hold back, so the sync stops between the two children)."""
    index = make_index(("safe", "new", seed), base=[layer], layers=1, layer_size=SMALL)
    first, second = index.children
    return index, first, second.blobs[-1]


@pytest.fixture
def held_layer(registry: RegistryServer) -> Iterator[list[StallingProxy]]:
    proxies: list[StallingProxy] = []
    yield proxies
    for proxy in proxies:
        proxy.close()


# -- the tree-complete check ---------------------------------------------------------------


def test_check_store_catches_a_deleted_blob(
    registry: RegistryServer, repo: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, registry.url, repo)
    root = tmp_path / "store"
    layer = _old_garbage_layer(registry, repo, config, "check")  # in an unlisted manifest now
    listed = make_image(("safe", "listed"), layers=1, layer_size=SMALL)
    push_image(registry.url, repo, "listed", listed)
    assert run_sync(config).code == 0
    check_store(root)
    for blob in (listed.blobs[-1].digest, layer.digest):
        path = _blob(root, repo, blob)
        data = path.read_bytes()
        path.unlink()
        with pytest.raises(AssertionError, match="is referenced but absent"):
            check_store(root)
        path.write_bytes(data)
    check_store(root)


# -- a child left by a failed sync keeps what it needs ----------------------------------------


@pytest.mark.parametrize("failure", ["child-missing-upstream", "sigkill"])
def test_a_child_left_by_a_failed_sync_keeps_its_old_layer_through_gc(
    registry: RegistryServer,
    repo: str,
    held_layer: list[StallingProxy],
    tmp_path: Path,
    failure: str,
) -> None:
    root = tmp_path / "store"
    layer = make_layer(("safe", "old", failure), size=SMALL)
    index, first, held = _index_over(layer, failure)
    proxy = StallingProxy(registry.url, held.digest, after=1)
    held_layer.append(proxy)
    config = _config(tmp_path, proxy.url, repo)
    assert _old_garbage_layer(registry, repo, config, failure) == layer
    assert wait_until(
        lambda: _age(_blob(root, repo, layer.digest)) > GRACE + 0.2, timeout=GRACE * 3
    )

    push_image(registry.url, repo, "new", index)
    if failure == "sigkill":  # killed between writing the first child and the index
        sync = _start("sync", "-c", str(config))
        try:
            written = wait_until(
                lambda: _blob(root, repo, first.digest).exists(),
                timeout=WAIT_SECONDS,
                alive=lambda: sync.poll() is None,
            )
        finally:
            sync.send_signal(signal.SIGKILL)
            sync.wait()
        assert written
    else:
        _delete(registry, repo, index.children[1].digest)
        assert run_sync(config).code == 1
    assert _blob(root, repo, first.digest).exists() and "new" not in layout_tags(root).get(repo, {})

    run = run_gc(config, "--grace", f"{GRACE:g}s")
    assert run.code == 0, run.output
    assert _blob(root, repo, first.digest).exists(), "the young child was not spared"
    check_store(root)  # the spared child still has its old layer

    proxy.release()
    if failure != "sigkill":
        second = index.children[1]
        push_manifest(registry.url, repo, second.digest, second.raw, second.media_type)
    run = run_sync(config)
    assert run.code == 0, run.output
    assert layout_tags(root)[repo] == {"new": index.digest}
    assert layer.digest in check_store(root)[repo]


def test_on_s3_a_child_left_by_a_failed_sync_keeps_its_old_layer_through_gc(
    registry: RegistryServer, repo: str, s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    try:
        config = _config(tmp_path, registry.url, repo)
        doc = yaml.safe_load(config.read_text())
        doc["storage"] = {"rootDirectory": "/m", "storageDriver": s3_server.driver(bucket, "/m")}
        config.write_text(yaml.safe_dump(doc))
        client = s3_server.client()

        def age(digest: str) -> float | None:
            key = f"m/{repo}/blobs/sha256/{digest.split(':')[1]}"
            try:
                found = client.head_object(Bucket=bucket, Key=key)
            except client.exceptions.ClientError:
                return None
            return (datetime.now(UTC) - found["LastModified"]).total_seconds()

        layer = _old_garbage_layer(registry, repo, config, "s3")
        index, first, _ = _index_over(layer, "s3")
        assert wait_until(lambda: (age(layer.digest) or 0) > GRACE + 1.2, timeout=GRACE * 3)
        push_image(registry.url, repo, "new", index)
        _delete(registry, repo, index.children[1].digest)
        assert run_sync(config).code == 1
        # No Redis on S3: nothing keeps a sync of another process out, so gc asks --force.
        run = run_gc(config, "--grace", f"{GRACE:g}s", "--force")
        assert run.code == 0, run.output
        assert age(first.digest) is not None and age(layer.digest) is not None

        second = index.children[1]
        push_manifest(registry.url, repo, second.digest, second.raw, second.media_type)
        assert run_sync(config).code == 0
        checked = run_check(config)
        assert checked.code == 0, checked.output
    finally:
        s3_server.drop(bucket)


# -- gc beside a sync of another process ---------------------------------------------------


@pytest.mark.parametrize("with_redis", [False, True], ids=["no-redis", "redis"])
def test_gc_beside_a_sync_in_another_process_waits_for_it(
    registry: RegistryServer,
    repo: str,
    held_layer: list[StallingProxy],
    private_redis: RedisServer,
    tmp_path: Path,
    with_redis: bool,
) -> None:
    root = tmp_path / "store"
    layer = make_layer(("safe", "old", "beside"), size=SMALL)
    index, first, held = _index_over(layer, "beside")
    proxy = StallingProxy(registry.url, held.digest, after=1)
    held_layer.append(proxy)
    settings = {"redis": private_redis.url} if with_redis else {}
    config = _config(tmp_path, proxy.url, repo, **settings)
    _old_garbage_layer(registry, repo, config, "beside")
    push_image(registry.url, repo, "new", index)

    sync = _start("sync", "-c", str(config))
    try:
        assert wait_until(
            lambda: _blob(root, repo, first.digest).exists(),
            timeout=WAIT_SECONDS,
            alive=lambda: sync.poll() is None,
        )
        # The sync has found the old layer present and written the child using it; it
        # goes on once the held layer comes, a second after gc has started.
        release = threading.Timer(1.0, proxy.release)
        release.start()
        run = run_gc(config, "--grace", "0s")
        release.join()
        assert sync.wait(timeout=WAIT_SECONDS) == 0
    finally:
        if sync.poll() is None:
            sync.send_signal(signal.SIGKILL)
            sync.wait()
    assert run.code == 0, run.output
    assert layout_tags(root)[repo] == {"new": index.digest}
    assert layer.digest in check_store(root)[repo]


# -- gc killed part-way ----------------------------------------------------------------------

KILL_IMAGES = 40
KILL_INDEXES = 4
# Lines of gc's output read before each kill: gc writes into a one-page pipe, so it
# is stopped a few dozen deletions further, never at the end.
KILL_AFTER = (1, 10, 20)


def _large_garbage(registry: RegistryServer, repo: str, config: Path) -> list[tuple[str, Manifest]]:
    images = [
        (f"i{n}", make_image(("safe", "kill", n), layers=2, layer_size=SMALL))
        for n in range(KILL_IMAGES)
    ]
    images += [
        (f"x{n}", make_index(("safe", "kill-index", n), layers=1, layer_size=SMALL))
        for n in range(KILL_INDEXES)
    ]
    for tag, image in images:
        push_image(registry.url, repo, tag, image)
    assert run_sync(config).code == 0
    for _, image in images:
        _delete(registry, repo, image.digest)
    run = run_sync(config)
    assert run.code == 0, run.output
    return images


def _gc_killed_after(config: Path, lines: int) -> int:
    """Run ``syncworker gc`` in a process; SIGKILL it once it has reported ``lines``
    deletions; its exit status."""
    gc, out = gc_on_a_pipe(config, stderr=subprocess.DEVNULL)
    with out:
        for _ in range(lines):
            assert out.readline().startswith(b"removed "), "gc ended early"
        gc.send_signal(signal.SIGKILL)
        return gc.wait()


def test_gc_killed_at_several_points_leaves_every_tree_whole(
    registry: RegistryServer, repo: str, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    config = _config(tmp_path, registry.url, repo)
    images = _large_garbage(registry, repo, config)
    blobs = len(list((root / repo / "blobs" / "sha256").iterdir()))
    for lines in KILL_AFTER:
        assert _gc_killed_after(config, lines) == -signal.SIGKILL
        check_store(root)  # every manifest left, listed or not, has its whole tree
    left = len(list((root / repo / "blobs" / "sha256").iterdir()))
    assert 0 < left < blobs
    # The upstream gets the images back: the next sync trusts whatever manifest it finds.
    for tag, image in images:
        push_image(registry.url, repo, tag, image)
    run = run_sync(config)
    assert run.code == 0, run.output
    assert layout_tags(root)[repo] == {tag: image.digest for tag, image in images}
    check_store(root)


class _FailingDeletes(FsStore):
    """A directory store whose deletes fail after ``after`` of them (as an S3 bucket
    answering 503 part-way through a collection)."""

    def __init__(self, root: Path, after: int) -> None:
        super().__init__(root)
        self.left = after

    def delete_blob(self, repo: str, digest: Digest) -> None:
        if self.left == 0:
            raise StoreError(f"{repo}: DeleteObject: 503 SlowDown")
        self.left -= 1
        super().delete_blob(repo, digest)


def test_gc_failing_part_way_reports_what_it_removed(
    registry: RegistryServer, repo: str, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    config = _config(tmp_path, registry.url, repo)
    _old_garbage_layer(registry, repo, config, "failing")  # manifest, config and layer: garbage
    store = _FailingDeletes(root, after=2)
    done = collect(store, lambda repo: store.hold(repo), 0.0)
    assert len(done.removed) == 2 and "503 SlowDown" in done.skipped[repo]
    check_store(root)


def test_gc_collects_a_repository_whose_first_sync_never_wrote_its_index(
    tmp_path: Path,
) -> None:
    """Every tag of a new repository failed (or its sync was killed) after some of its tree
    was stored: no index.json lists anything there, so past the grace all of it is
    garbage, removed manifest first; before, gc never looked at such a repository."""
    store = FsStore(tmp_path / "store")
    image = make_image(("gc", "never indexed"), layers=1, layer_size=SMALL)
    for blob in image.blobs:
        store.put_blob("never/indexed", Digest.parse(blob.digest), blob.size, [blob.data])
    store.put_manifest("never/indexed", Digest.parse(image.digest), image.raw)
    assert store.repositories() == []

    done = collect(store, lambda repo: store.hold(repo), 0.0)
    assert not done.skipped
    assert [str(r.digest) for r in done.removed][0] == image.digest  # the parent first
    assert {str(r.digest) for r in done.removed} == {image.digest, *(b.digest for b in image.blobs)}
    assert not any(store.has_blob("never/indexed", Digest.parse(b.digest)) for b in image.blobs)


def _image_as_a_layer() -> tuple[Manifest, Manifest]:
    """An image, and an artifact whose one layer is that image's manifest (its payload);
    the first seed whose image has a blob that sorts before the artifact, the order in
    which gc, missing the image's tree, deleted that blob before the image."""
    for seed in itertools.count():
        image = make_image(("gc", "as a layer", seed), layers=3, layer_size=SMALL)
        artifact = make_artifact(
            None,
            artifact_type="application/vnd.example.image",
            payload=image.raw,
            payload_media_type=OCI_MANIFEST,
        )
        if min(b.digest for b in image.blobs) < artifact.digest:
            return image, artifact
    raise AssertionError("unreachable")


def test_gc_failing_anywhere_leaves_whole_a_manifest_another_lists_as_a_layer(
    tmp_path: Path,
) -> None:
    """The image's manifest is both a layer and a manifest with a tree of its own, so it
    goes before its config and layers however far gc gets. Garbage all of it (smallest
    first, the artifact is read before the image), gc failing after each count of
    deletions."""
    image, artifact = _image_as_a_layer()
    repo = "gc/as-a-layer"
    blobs = {b.digest: b.data for b in (*image.blobs, *artifact.blobs)}
    blobs |= {image.digest: image.raw, artifact.digest: artifact.raw}
    assert len(artifact.raw) < len(image.raw)
    for after in range(len(blobs)):
        root = tmp_path / str(after)
        store = _FailingDeletes(root, after)
        for digest, data in blobs.items():
            store.put_blob(repo, Digest.parse(digest), len(data), [data])
        store.backend.put(f"{repo}/index.json", indexdoc.dump_index(indexdoc.new_index()))
        done = collect(store, store.hold, 0.0)
        assert len(done.removed) == after
        check_store(root)  # every manifest left, listed or not, has its whole tree


def test_gc_keeps_the_tree_of_a_manifest_an_artifact_carries_as_a_layer(tmp_path: Path) -> None:
    """An artifact kept (listed in index.json) whose layer is an image's manifest: the
    image's config and layers are kept with it, so the manifest it carries stays whole."""
    image, artifact = _image_as_a_layer()
    repo, root = "gc/carried", tmp_path / "store"
    store = FsStore(root)
    for blob in (*image.blobs, *artifact.blobs):
        store.put_blob(repo, Digest.parse(blob.digest), len(blob.data), [blob.data])
    for manifest in (image, artifact):
        store.put_manifest(repo, Digest.parse(manifest.digest), manifest.raw)
    listed = Descriptor(OCI_MANIFEST, Digest.parse(artifact.digest), len(artifact.raw))
    store.update_index(repo, [IndexEntry(listed, "payload")])
    done = collect(store, store.hold, 0.0)
    assert not done.removed and not done.skipped, done
    check_store(root)
