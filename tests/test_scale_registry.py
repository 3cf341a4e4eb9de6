"""The synthetic registry: what skopeo and our own client read from it is real and paginated."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncworker.registry.client import RegistryClient
from tests.support.synthetic_registry import MAX_PAGE, SyntheticRegistry


@pytest.fixture(scope="module")
def synthetic() -> Iterator[SyntheticRegistry]:
    with SyntheticRegistry(2500, tags=2) as registry:
        yield registry


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_skopeo_copies_an_image_whose_digests_verify(
    synthetic: SyntheticRegistry, tmp_path: Path
) -> None:
    source = f"docker://{synthetic.host}/synth/r001234:v1"
    inspect = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", source], capture_output=True, text=True
    )
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["Digest"] == synthetic.image("synth/r001234", "v1").digest

    dest = tmp_path / "image"
    copy = subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", source, f"dir:{dest}"],
        capture_output=True,
        text=True,
    )
    assert copy.returncode == 0, copy.stderr
    manifest = json.loads((dest / "manifest.json").read_text())
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = dest / descriptor["digest"].removeprefix("sha256:")
        assert _sha256(blob) == descriptor["digest"]
        assert blob.stat().st_size == descriptor["size"]


def test_content_depends_on_seed_repository_and_tag() -> None:
    with SyntheticRegistry(3, tags=2) as one, SyntheticRegistry(3, tags=2, seed=1) as other:
        digests = {one.image(repo, tag).digest for repo in one.repos for tag in one.tags}
        assert len(digests) == 6
        assert one.image("synth/r000001", "v0") != other.image("synth/r000001", "v0")
        again = SyntheticRegistry(3, tags=2)
        try:
            assert again.image("synth/r000002", "v1") == one.image("synth/r000002", "v1")
        finally:
            again.stop()


def test_catalog_pages_follow_link_headers_to_every_repository(
    synthetic: SyntheticRegistry,
) -> None:
    before = synthetic.requests["get catalog"]
    with RegistryClient([synthetic.url]) as client:
        seen: list[str] = []
        last: str | None = None
        while True:
            names, last = client.catalog_page(last, MAX_PAGE)
            seen += names
            if last is None:
                break
    assert seen == synthetic.repos
    assert synthetic.requests["get catalog"] - before == 3  # 1000 + 1000 + 500


def test_pagination_answers_like_distribution(synthetic: SyntheticRegistry) -> None:
    reply = requests.get(f"{synthetic.url}/v2/_catalog", params={"n": 2, "last": "synth/r000007"})
    assert reply.json() == {"repositories": ["synth/r000008", "synth/r000009"]}
    assert reply.headers["Link"] == '</v2/_catalog?last=synth/r000009&n=2>; rel="next"'
    end = requests.get(f"{synthetic.url}/v2/_catalog", params={"last": "synth/r002498"})
    assert end.json() == {"repositories": ["synth/r002499"]} and "Link" not in end.headers
    too_many = requests.get(f"{synthetic.url}/v2/_catalog", params={"n": MAX_PAGE + 1})
    assert too_many.status_code == 400
    assert too_many.json()["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"
    tags = requests.get(f"{synthetic.url}/v2/synth/r000003/tags/list", params={"n": 1})
    assert tags.json() == {"name": "synth/r000003", "tags": ["v0"]}
    assert tags.headers["Link"] == '</v2/synth/r000003/tags/list?last=v0&n=1>; rel="next"'


def test_manifests_by_tag_and_digest_blobs_and_unknowns(synthetic: SyntheticRegistry) -> None:
    image = synthetic.image("synth/r000010", "v0")
    base = f"{synthetic.url}/v2/synth/r000010"
    head = requests.head(f"{base}/manifests/v0")
    assert head.headers["Docker-Content-Digest"] == image.digest
    assert int(head.headers["Content-Length"]) == len(image.manifest) and not head.content
    by_digest = requests.get(f"{base}/manifests/{image.digest}")
    assert by_digest.content == image.manifest
    for digest, data in image.blobs().items():
        assert requests.get(f"{base}/blobs/{digest}").content == data
    other = synthetic.image("synth/r000011", "v0")
    assert requests.get(f"{base}/manifests/{other.digest}").status_code == 404
    for digest in other.blobs():
        answer = requests.get(f"{base}/blobs/{digest}")
        assert answer.status_code == 404 and answer.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    missing = requests.get(f"{synthetic.url}/v2/synth/r999999/tags/list")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_counts_the_requests_it_answers(synthetic: SyntheticRegistry) -> None:
    before = synthetic.requests.copy()
    with requests.Session() as session:
        for number in range(200):
            session.head(f"{synthetic.url}/v2/synth/r{number:06d}/manifests/v1")
        session.get(f"{synthetic.url}/v2/")
    after = synthetic.requests
    assert after["head manifest"] - before["head manifest"] == 200
    assert after["get base"] - before["get base"] == 1
