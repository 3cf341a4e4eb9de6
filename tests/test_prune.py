"""Registry option ``prune: true``: a tag the upstream no longer lists leaves the mirror's
index, only after a complete tag listing in that run, and never a referrer whose subject is
still there; nothing is removed when a manifest the decision needs cannot be read. Against
the real ``docker-registry`` (deleting manifests by digest), and a stub where an answer no
registry sends is needed (a listing failing half-way, the referrers API)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from syncworker.cli.units import human_size
from syncworker.config import load_config
from syncworker.config.mirrorbuild import build_mirror
from syncworker.config.storeopen import store_for
from syncworker.engine import LocalLocks
from syncworker.errors import LockLost
from tests.support.hostile import Answer, HostileRegistry, json_answer
from tests.support.images import OCI_INDEX, Manifest, make_artifact, make_image, make_index
from tests.support.mirror import check_store, layout_tags, run_sync, write_sync_config
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer

COSIGN_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
PAGE_ONE = Answer(
    200,
    json.dumps({"name": "prune/paged", "tags": ["v1"]}).encode(),
    {"Content-Type": "application/json", "Link": '</v2/prune/paged/p2>; rel="next"'},
)


@pytest.fixture
def upstream() -> Iterator[HostileRegistry]:
    server = HostileRegistry()
    yield server
    server.close()


def _config(tmp_path: Path, url: str, prefix: str, **entry: Any) -> Path:
    registries = [{"urls": [url], "content": [{"prefix": prefix}], **entry}]
    return write_sync_config(tmp_path, tmp_path / "store", registries)


def _delete(registry: RegistryServer, repo: str, image: Manifest) -> None:
    url = f"{registry.url}/v2/{repo}/manifests/{image.digest}"
    assert requests.delete(url, timeout=10).status_code == 202


def _sig_tag(image: Manifest) -> str:
    return image.digest.replace(":", "-") + ".sig"


def test_a_tag_deleted_upstream_is_pruned_only_when_asked(
    registry: RegistryServer, tmp_path: Path
) -> None:
    repo = "prune/app"
    images = {tag: make_image(("prune", tag), layers=1) for tag in ("v1", "v2", "v3")}
    for tag, image in images.items():
        push_image(registry.url, repo, tag, image)
    root = tmp_path / "store"
    assert run_sync(_config(tmp_path, registry.url, "prune/**")).code == 0
    _delete(registry, repo, images["v2"])

    run = run_sync(_config(tmp_path, registry.url, "prune/**"))  # prune is opt-in
    assert run.code == 0, run.output
    assert sorted(layout_tags(root)[repo]) == ["v1", "v2", "v3"]
    assert "PRUNED" not in run.stdout

    index_before = (root / repo / "index.json").read_bytes()
    run = run_sync(_config(tmp_path, registry.url, "prune/**", prune=True))
    assert run.code == 0, run.output
    assert sorted(layout_tags(root)[repo]) == ["v1", "v3"]
    size = images["v2"].size + sum(b.size for b in images["v2"].blobs)
    assert f"  PRUNED {registry.host}/{repo}: v2 ({human_size(size)})" in run.stdout
    assert f"pruned 1 entry ({human_size(size)};" in run.stdout
    # Blobs stay (gc's business); the index lost exactly one entry.
    assert (root / repo / "blobs" / "sha256" / images["v2"].digest.split(":")[1]).exists()
    entries = json.loads(index_before)["manifests"]
    assert json.loads((root / repo / "index.json").read_bytes())["manifests"] == [
        e for e in entries if e["digest"] != images["v2"].digest
    ]


def test_a_signature_tag_stays_while_its_image_does(
    registry: RegistryServer, tmp_path: Path
) -> None:
    repo = "prune/signed"
    kept, dropped = make_image(("prune", "kept")), make_image(("prune", "dropped"))
    signatures = {
        image.digest: make_artifact(None, artifact_type=COSIGN_SIG, payload=image.digest.encode())
        for image in (kept, dropped)
    }
    for tag, image in (("kept", kept), ("dropped", dropped)):
        push_image(registry.url, repo, tag, image)
        push_image(registry.url, repo, _sig_tag(image), signatures[image.digest])
    root = tmp_path / "store"
    config = _config(tmp_path, registry.url, "prune/**", prune=True)
    assert run_sync(config).code == 0
    assert len(layout_tags(root)[repo]) == 4
    # Upstream: the kept image's signature is deleted (it is still signed here, its
    # subject is present); the dropped image is deleted, its signature tag left behind.
    _delete(registry, repo, signatures[kept.digest])
    _delete(registry, repo, dropped)
    run = run_sync(config)
    assert run.code == 0, run.output
    assert sorted(layout_tags(root)[repo]) == sorted(["kept", _sig_tag(kept), _sig_tag(dropped)])
    assert f"{repo}: dropped (" in run.stdout


def _referrers(upstream: HostileRegistry, repo: str, subject: Manifest, *found: Manifest) -> None:
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX}
    index["manifests"] = [r.referrer_descriptor() for r in found]  # type: ignore[assignment]
    upstream.route(
        "GET", f"/v2/{repo}/referrers/{subject.digest}", json_answer(index, media_type=OCI_INDEX)
    )


def test_referrers_go_with_their_subject(upstream: HostileRegistry, tmp_path: Path) -> None:
    repo = "prune/referred"
    images = {tag: make_image(("referred", tag), layers=1) for tag in ("v1", "v2")}
    signatures = {
        tag: make_artifact(image, artifact_type=COSIGN_SIG, payload=tag.encode())
        for tag, image in images.items()
    }
    upstream.serve_tags(repo, ["v1", "v2"])
    for tag, image in images.items():
        upstream.serve_image(repo, tag, image)
        upstream.serve_image(repo, signatures[tag].digest, signatures[tag])
        _referrers(upstream, repo, image, signatures[tag])
        _referrers(upstream, repo, signatures[tag])
    root = tmp_path / "store"
    config = _config(tmp_path, upstream.url, "**", repos=[repo], prune=True)
    assert run_sync(config).code == 0
    upstream.serve_tags(repo, ["v2"])
    run = run_sync(config)
    assert run.code == 0, run.output
    index = json.loads((root / repo / "index.json").read_text())["manifests"]
    assert sorted(e["digest"] for e in index) == sorted(
        [images["v2"].digest, signatures["v2"].digest]
    )
    assert f"{repo}: v1, {signatures['v1'].digest} (" in run.stdout


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param([Answer(500, b"down")] * 10, id="listing-fails"),
        pytest.param([PAGE_ONE], id="second-page-fails"),
    ],
)
def test_an_incomplete_listing_prunes_nothing(
    upstream: HostileRegistry, tmp_path: Path, broken: list[Answer]
) -> None:
    repo = "prune/paged"
    images = {tag: make_image(("paged", tag), layers=1) for tag in ("v1", "v2")}
    upstream.serve_tags(repo, list(images))
    for tag, image in images.items():
        upstream.serve_image(repo, tag, image)
    root = tmp_path / "store"
    config = _config(tmp_path, upstream.url, "**", repos=[repo], prune=True)
    assert run_sync(config).code == 0
    index = (root / repo / "index.json").read_bytes()
    upstream.route("GET", f"/v2/{repo}/p2", Answer(500, b"down"))
    upstream.first("GET", f"/v2/{repo}/tags/list", *broken)
    run = run_sync(config)
    assert run.code == 1 and "PRUNED" not in run.stdout, run.output
    assert (root / repo / "index.json").read_bytes() == index


def test_a_registry_destination_refuses_prune(
    registry: RegistryServer, make_registry: Any, tmp_path: Path
) -> None:
    repo = "prune/dest"
    push_image(registry.url, repo, "v1", make_image(("prune", "dest")))
    push_image(registry.url, repo, "v2", make_image(("prune", "dest", 2)))
    dest = make_registry()
    entry = {"urls": [registry.url], "content": [{"prefix": "prune/dest"}], "prune": True}
    settings = {"destination": {"url": dest.url}}
    config = write_sync_config(tmp_path, tmp_path / "unused", [entry], settings=settings)
    assert run_sync(config).code == 0  # nothing to prune: nothing refused
    requests.delete(
        f"{registry.url}/v2/{repo}/manifests/{make_image(('prune', 'dest', 2)).digest}",
        timeout=10,
    )
    run = run_sync(config)
    assert run.code == 1
    assert "prune is not supported when the destination is a registry" in run.stdout
    assert dest.host in run.stdout


def test_a_prune_that_cannot_read_a_manifest_removes_nothing(
    registry: RegistryServer, tmp_path: Path
) -> None:
    repo = "prune/unreadable"
    index = make_index(("prune", "unreadable"), layers=1)
    signature = make_image(("prune", "unreadable-signature"), layers=1)
    sig_tag = _sig_tag(index.children[0])
    gone = make_image(("prune", "unreadable-gone"), layers=1)
    for tag, image in (("multi", index), (sig_tag, signature), ("gone", gone)):
        push_image(registry.url, repo, tag, image)
    root = tmp_path / "store"
    config = _config(tmp_path, registry.url, repo, prune=True)
    assert run_sync(config).code == 0
    # Upstream the signature tag goes (it stays while its subject, a child of a tagged
    # index, is mirrored) and so does "gone": a prune is due; but the index is unreadable.
    _delete(registry, repo, signature)
    _delete(registry, repo, gone)
    (root / repo / "blobs" / "sha256" / index.digest.split(":")[1]).write_bytes(b"{}")
    before = (root / repo / "index.json").read_bytes()
    run = run_sync(config)
    assert run.code == 1 and f"{repo}: nothing pruned: " in run.output, run.output
    assert (root / repo / "index.json").read_bytes() == before
    assert sig_tag in layout_tags(root)[repo]


class _LostLocks(LocalLocks):
    """Locks whose repository lock is found lost when asked (as a Redis lock that expired
    under a holder paused past its TTL, tests/test_lock_ttl.py)."""

    @contextmanager
    def repo_lock(self, dest_repo: str, *, blocking_timeout: float | None = None) -> Iterator[Any]:
        with super().repo_lock(dest_repo, blocking_timeout=blocking_timeout):
            yield self

    def ensure(self) -> None:
        raise LockLost("syncworker:lock:repo:prune/lost")


def test_a_prune_whose_lock_was_lost_removes_nothing(
    registry: RegistryServer, tmp_path: Path
) -> None:
    repo = "prune/lost"
    images = {tag: make_image(("prune-lost", tag), layers=1) for tag in ("v1", "v2")}
    for tag, image in images.items():
        push_image(registry.url, repo, tag, image)
    root = tmp_path / "store"
    path = _config(tmp_path, registry.url, repo, prune=True)
    assert run_sync(path).code == 0
    _delete(registry, repo, images["v2"])
    config = load_config(path)
    with build_mirror(config, store_for(config), _LostLocks()) as mirror:
        result = mirror.sync_repo(registry.host, repo)
    assert result.pruned == [] and sorted(layout_tags(root)[repo]) == ["v1", "v2"]
    assert [f.reason for f in result.failures] == [
        "lock syncworker:lock:repo:prune/lost expired while held; stopped, another worker may"
        " hold it"
    ]


def test_a_digest_synced_on_purpose_stays_when_a_tag_naming_it_is_pruned(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """``early`` is synced by digest before a tag names it, ``late`` after: pruning the
    tags leaves both listed untagged, their trees whole."""
    repo = "prune/bydigest"
    images = {tag: make_image(("prune-bydigest", tag), layers=1) for tag in ("early", "late")}
    for tag, image in images.items():
        push_image(registry.url, repo, tag, image)
    push_image(registry.url, repo, "kept", make_image(("prune-bydigest", "kept"), layers=1))
    root, path = tmp_path / "store", _config(tmp_path, registry.url, repo, prune=True)
    config = load_config(path)
    with build_mirror(config, store_for(config), LocalLocks()) as mirror:
        assert not mirror.sync_image(registry.host, repo, images["early"].digest).failures
        assert run_sync(path).code == 0
        assert not mirror.sync_image(registry.host, repo, images["late"].digest).failures
    for image in images.values():
        _delete(registry, repo, image)

    run = run_sync(path)
    assert run.code == 0 and "PRUNED" in run.stdout, run.output
    assert layout_tags(root)[repo].keys() == {"kept"}
    untagged = [
        m["digest"]
        for m in json.loads((root / repo / "index.json").read_bytes())["manifests"]
        if "annotations" not in m
    ]
    assert sorted(untagged) == sorted(i.digest for i in images.values())
    reachable = check_store(root)[repo]
    assert {i.digest for i in images.values()} <= reachable
