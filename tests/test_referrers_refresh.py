"""Referrers of unchanged images stay current: a signature attached upstream after the image
was mirrored arrives on the next run, for one request per image on an upstream with the
referrers API and none on one without. A stub serves the referrers API (the Debian
``docker-registry``, distribution 2.8, has none; its fallback tags are covered in
test_sync_e2e)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hostile import Answer, HostileRegistry, json_answer
from tests.support.images import OCI_INDEX, Manifest, make_artifact, make_image
from tests.support.mirror import check_store, run_sync, write_sync_config

COSIGN_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"


@pytest.fixture
def upstream() -> Iterator[HostileRegistry]:
    server = HostileRegistry()
    yield server
    server.close()


def _referrers(upstream: HostileRegistry, repo: str, subject: Manifest, *found: Manifest) -> None:
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [r.referrer_descriptor() for r in found],
    }
    path = f"/v2/{repo}/referrers/{subject.digest}"
    upstream.route("GET", path, json_answer(index, media_type=OCI_INDEX))
    for referrer in found:
        upstream.serve_image(repo, referrer.digest, referrer)


def _untagged(root: Path, repo: str) -> set[str]:
    index = json.loads((root / repo / "index.json").read_text())
    tag = "org.opencontainers.image.ref.name"
    return {m["digest"] for m in index["manifests"] if tag not in m.get("annotations", {})}


def _since(upstream: HostileRegistry, start: int) -> list[tuple[str, str]]:
    return upstream.requests[start:]


def test_a_signature_attached_later_arrives_for_one_request_per_image(
    upstream: HostileRegistry, tmp_path: Path
) -> None:
    repo, tags = "signed/app", ["v1", "v2", "v3"]
    images = {tag: make_image(("refresh", tag), layers=1) for tag in tags}
    upstream.serve_tags(repo, tags)
    for tag, image in images.items():
        upstream.serve_image(repo, tag, image)
        _referrers(upstream, repo, image)
    root = tmp_path / "store"
    config = write_sync_config(tmp_path, root, [{"urls": [upstream.url], "repos": [repo]}])
    assert run_sync(config).code == 0

    # Signed after it was mirrored, and an SBOM with its own signature: the tag's digest
    # does not change.
    signature = make_artifact(images["v2"], artifact_type=COSIGN_SIG, payload=b"sig of v2")
    sbom = make_artifact(images["v2"], artifact_type=SBOM, payload=b"sbom of v2")
    sbom_signature = make_artifact(sbom, artifact_type=COSIGN_SIG, payload=b"sig of sbom")
    _referrers(upstream, repo, images["v2"], signature, sbom)
    _referrers(upstream, repo, sbom, sbom_signature)
    for leaf in (signature, sbom_signature):
        _referrers(upstream, repo, leaf)  # an API answers every subject, if only with []
    start = len(upstream.requests)
    run = run_sync(config)
    assert run.code == 0, run.output
    assert "0 images copied, 3 unchanged" not in run.stdout  # the referrers were copied
    new = {signature.digest, sbom.digest, sbom_signature.digest}
    assert _untagged(root, repo) >= new
    assert check_store(root)[repo] >= {
        m.digest for a in (signature, sbom_signature) for m in a.walk()
    }
    listed = [path for method, path in _since(upstream, start) if "/referrers/" in path]
    # One listing per image; the new referrers, not mirrored yet, are walked too.
    walked = [*(i.digest for i in images.values()), *new]
    assert sorted(listed) == sorted(f"/v2/{repo}/referrers/{d}" for d in walked)

    # Nothing new: a tag list, a HEAD and a referrers listing per image; nothing fetched.
    start = len(upstream.requests)
    before = (root / repo / "index.json").stat().st_mtime_ns
    run = run_sync(config)
    assert run.code == 0, run.output
    spent = sorted(_since(upstream, start))
    expected = [("GET", f"/v2/{repo}/tags/list")]
    expected += [("HEAD", f"/v2/{repo}/manifests/{tag}") for tag in tags]
    expected += [("GET", f"/v2/{repo}/referrers/{i.digest}") for i in images.values()]
    assert spent == sorted(expected)
    assert (root / repo / "index.json").stat().st_mtime_ns == before


def test_an_upstream_without_the_api_is_asked_once_per_run(
    upstream: HostileRegistry, tmp_path: Path
) -> None:
    """No referrers route: the stub answers 404 as distribution 2.x does. The first answer
    is learnt for the registry; the other tags, in flight at the same time, wait for it."""
    repo, tags = "unsigned/app", [f"t{i}" for i in range(8)]
    upstream.serve_tags(repo, tags)
    for tag in tags:
        upstream.serve_image(repo, tag, make_image(("no-api", tag), layers=1))
    root = tmp_path / "store"
    config = write_sync_config(tmp_path, root, [{"urls": [upstream.url], "repos": [repo]}])
    assert run_sync(config).code == 0
    start = len(upstream.requests)
    run = run_sync(config)
    assert run.code == 0, run.output
    assert f"0 images copied, {len(tags)} unchanged" in run.stdout
    spent = _since(upstream, start)
    assert len([p for _, p in spent if "/referrers/" in p]) == 1
    assert len(spent) == 1 + len(tags) + 1  # tag list, a HEAD per tag, the one probe


def test_a_failing_listing_fails_only_its_tag(upstream: HostileRegistry, tmp_path: Path) -> None:
    repo = "flaky/app"
    images = {tag: make_image(("flaky", tag), layers=1) for tag in ("v1", "v2")}
    upstream.serve_tags(repo, list(images))
    for tag, image in images.items():
        upstream.serve_image(repo, tag, image)
        _referrers(upstream, repo, image)
    root = tmp_path / "store"
    config = write_sync_config(tmp_path, root, [{"urls": [upstream.url], "repos": [repo]}])
    assert run_sync(config).code == 0
    path = f"/v2/{repo}/referrers/{images['v1'].digest}"
    upstream.route("GET", path, Answer(500, b"broken"))
    run = run_sync(config)
    assert run.code != 0
    assert "1 unchanged" in run.stdout and "1 failure\n" in run.stdout, run.output
    assert f"{repo}:v1" in run.stdout and f"{repo}:v2" not in run.stdout
