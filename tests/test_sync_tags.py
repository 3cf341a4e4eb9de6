"""Tags of one repository: run concurrently, listed in ``index.json`` under the configured
media types, referrers walked once per digest, a failure confined to its tag."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncworker.config.storeopen import open_store
from syncworker.engine.plan import index_descriptor
from syncworker.oci import Descriptor
from syncworker.store import IndexEntry
from tests.support.hostile import Answer, HostileRegistry, json_answer
from tests.support.images import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    canonical_json,
    make_artifact,
    make_image,
    make_index,
)
from tests.support.mirror import check_store, layout_tags, run_sync, write_sync_config
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer

UPSTREAM_MEDIA_TYPE = "io.syncworker.upstream.mediaType"


@pytest.fixture
def upstream() -> Iterator[HostileRegistry]:
    server = HostileRegistry()
    yield server
    server.close()


def _listed(root: Path, repo: str) -> Iterator[tuple[str | None, str, tuple[str, str | None]]]:
    """(tag, digest, (media type, upstream type annotation)) of each index.json entry."""
    for entry in json.loads((root / repo / "index.json").read_text())["manifests"]:
        annotations = entry.get("annotations", {})
        tag = annotations.get("org.opencontainers.image.ref.name")
        yield tag, entry["digest"], (entry["mediaType"], annotations.get(UPSTREAM_MEDIA_TYPE))


def _entries(root: Path, repo: str) -> dict[str, tuple[str, str | None]]:
    return {tag: types for tag, _, types in _listed(root, repo) if tag is not None}


def _untagged(root: Path, repo: str) -> dict[str, tuple[str, str | None]]:
    return {digest: types for tag, digest, types in _listed(root, repo) if tag is None}


def _downloads(server: RegistryServer) -> int:
    return server.request_count(handler="manifest", method="get") + server.blob_gets()


def test_layout_media_types_switch_rewrites_the_index_without_a_download(
    registry: RegistryServer, tmp_path: Path
) -> None:
    push_image(registry.url, "relist/app", "image", make_image("relist", fmt="docker"))
    docker_list = make_index("relist-list", fmt="docker")
    push_image(registry.url, "relist/app", "list", docker_list)
    root = tmp_path / "store"
    entry = {"urls": [registry.url], "content": [{"prefix": "relist/**"}]}

    def sync(settings: dict[str, Any] | None) -> None:
        run = run_sync(write_sync_config(tmp_path, root, [entry], settings=settings))
        assert run.code == 0, run.output

    sync({"layoutMediaTypes": "oci"})
    # An image synced by digest is listed untagged: one of the list's children, as the
    # ``oci`` setting lists it.
    child = Descriptor.from_json(docker_list.json["manifests"][0])
    store = open_store(str(root))
    store.update_index("relist/app", [IndexEntry(index_descriptor(child, "oci"))])
    twins = {
        "image": (OCI_MANIFEST, DOCKER_MANIFEST),
        "list": (OCI_INDEX, DOCKER_MANIFEST_LIST),
    }
    assert _entries(root, "relist/app") == twins
    assert _untagged(root, "relist/app") == {str(child.digest): (OCI_MANIFEST, DOCKER_MANIFEST)}
    tags = layout_tags(root)

    before = _downloads(registry)
    sync(None)  # the default: the type of the bytes
    assert _entries(root, "relist/app") == {
        "image": (DOCKER_MANIFEST, None),
        "list": (DOCKER_MANIFEST_LIST, None),
    }
    assert _untagged(root, "relist/app") == {str(child.digest): (DOCKER_MANIFEST, None)}
    assert _downloads(registry) == before
    assert layout_tags(root) == tags

    sync({"layoutMediaTypes": "oci"})
    assert _entries(root, "relist/app") == twins
    assert _untagged(root, "relist/app") == {str(child.digest): (OCI_MANIFEST, DOCKER_MANIFEST)}
    assert _downloads(registry) == before


class Rendezvous(dict[tuple[str, str], Answer]):
    """Routes where a HEAD of a manifest by tag is answered only once ``parties`` of them
    are in flight together; one left waiting alone gets a 404 after ``timeout``."""

    def __init__(self, routes: dict[tuple[str, str], Answer], parties: int) -> None:
        super().__init__(routes)
        self._barrier = threading.Barrier(parties, timeout=5.0)
        self.met = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        method, path = key
        if method == "HEAD" and "/manifests/" in path and ":" not in path.rsplit("/", 1)[1]:
            try:
                self._barrier.wait()
            except threading.BrokenBarrierError:
                self._barrier.reset()
                return None
            with self._lock:
                self.met += 1
        return super().get(key, default)


def test_tags_of_a_repository_are_checked_concurrently(
    upstream: HostileRegistry, tmp_path: Path
) -> None:
    repo, tags = "many/tags", [f"t{i}" for i in range(8)]
    upstream.serve_tags(repo, tags)
    for tag in tags:
        upstream.serve_image(repo, tag, make_image(("concurrent", tag), layers=1))
    root = tmp_path / "store"
    config = write_sync_config(tmp_path, root, [{"urls": [upstream.url], "repos": [repo]}])
    assert run_sync(config).code == 0
    # The no-op run HEADs each tag; 4 at a time by default (tagConcurrency), so the HEADs
    # meet in groups of 4. One tag after the other, each would wait alone and fail.
    rendezvous = Rendezvous(upstream._routes, parties=4)
    upstream._routes = rendezvous
    run = run_sync(config)
    assert run.code == 0, run.output
    assert rendezvous.met == len(tags)
    assert f"0 images copied, {len(tags)} unchanged" in run.stdout


def _referrers_answer(referrers: list[Manifest]) -> Answer:
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [r.referrer_descriptor() for r in referrers],
    }
    return json_answer(index, media_type=OCI_INDEX)


def test_a_lattice_of_referrers_costs_one_listing_per_digest(
    upstream: HostileRegistry, tmp_path: Path
) -> None:
    """Four levels of two referrers, each node listing both nodes of the level below:
    30 paths from the image, 9 distinct manifests to list referrers of."""
    repo = "lattice/app"
    image = make_image("lattice")
    upstream.serve_tags(repo, ["v1"])
    upstream.serve_image(repo, "v1", image)
    levels: list[list[Manifest]] = [[image]]
    for depth in range(1, 5):
        subject = levels[-1][0]
        levels.append(
            [
                make_artifact(
                    subject,
                    artifact_type="application/vnd.example.note",
                    payload=f"level {depth} node {n}".encode(),
                )
                for n in range(2)
            ]
        )
    for above, below in zip(levels, [*levels[1:], []], strict=True):
        for node in above:
            upstream.route("GET", f"/v2/{repo}/referrers/{node.digest}", _referrers_answer(below))
        for node in below:
            upstream.serve_image(repo, node.digest, node)
    root = tmp_path / "store"
    run = run_sync(write_sync_config(tmp_path, root, [{"urls": [upstream.url], "repos": [repo]}]))
    assert run.code == 0, run.output
    listed = [path for method, path in upstream.requests if "/referrers/" in path]
    every = [node.digest for level in levels for node in level]
    assert sorted(listed) == sorted(f"/v2/{repo}/referrers/{d}" for d in every)
    assert check_store(root)[repo] >= {
        m.digest for level in levels for node in level for m in node.walk()
    }


def test_a_failing_tag_fails_only_itself(upstream: HostileRegistry, tmp_path: Path) -> None:
    repo, tags = "some/bad", [f"t{i}" for i in range(6)]
    upstream.serve_tags(repo, tags)
    images = {tag: make_image(("one-bad", tag), layers=1) for tag in tags}
    for tag, image in images.items():
        upstream.serve_image(repo, tag, image)
    liar = images["t3"]
    upstream.serve_manifest(repo, "t3", liar, body=canonical_json({**liar.json, "x": 1}))
    root = tmp_path / "store"
    run = run_sync(write_sync_config(tmp_path, root, [{"urls": [upstream.url], "repos": [repo]}]))
    assert run.code == 1
    failed = [line for line in run.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and f"{repo}:t3:" in failed[0], run.stdout
    assert layout_tags(root)[repo] == {t: images[t].digest for t in tags if t != "t3"}
