"""Generated images are deterministic and real: tar layers, matching diff_ids, unpackable."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import redis
import requests

from tests.support.corpus import seed_many
from tests.support.images import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    make_artifact,
    make_image,
    make_index,
    make_layer,
)
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

TOOL_TIMEOUT = 120


def test_same_seed_same_digests() -> None:
    assert make_image("x").digest == make_image("x").digest
    assert make_index("x").digest == make_index("x").digest
    assert make_image("x").digest != make_image("y").digest


def test_layer_is_gzip_tar_and_diff_id_matches() -> None:
    layer = make_layer("real", size=3000)
    raw = gzip.decompress(layer.data)
    assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        sizes = [member.size for member in tar.getmembers()]
    assert len(sizes) == 3 and sum(sizes) == 3000


def test_index_platforms() -> None:
    oci, docker = make_index("p"), make_index("p", fmt="docker")
    assert oci.media_type == OCI_INDEX and docker.media_type == DOCKER_MANIFEST_LIST
    platforms = [d["platform"] for d in oci.json["manifests"]]
    assert platforms == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
    ]


def test_artifact_shape() -> None:
    subject = make_image("s")
    artifact = make_artifact(subject, artifact_type="application/x.test", payload=b"p")
    body = artifact.json
    assert body["artifactType"] == "application/x.test"
    assert body["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert body["config"]["size"] == 2
    assert body["subject"]["digest"] == subject.digest


def test_umoci_unpacks_an_image_copied_by_skopeo(registry: RegistryServer, tmp_path: Path) -> None:
    image = make_image("unpack", layers=2)
    push_image(registry.url, "support/unpack", "v1", image)
    layout = tmp_path / "layout"
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false",
         f"docker://{registry.host}/support/unpack:v1", f"oci:{layout}:v1"],
        check=True, capture_output=True, timeout=TOOL_TIMEOUT,
    )  # fmt: skip
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle)],
        check=True, capture_output=True, timeout=TOOL_TIMEOUT,
    )  # fmt: skip
    files = sorted(p.name for p in (bundle / "rootfs" / "data").rglob("*.bin"))
    assert files == sorted(["file0.bin", "file1.bin", "file2.bin"] * 2)


def test_seed_many_shares_base_layers(registry: RegistryServer) -> None:
    corpus = seed_many(registry, repos=3, tags=2, layers=2, shared_layers=2, prefix="support-many")
    assert corpus.repositories == [f"support-many/repo-{i:03d}" for i in range(3)]
    assert all(sorted(tags) == ["t0", "t1"] for tags in corpus.tags.values())
    blob_sets = list(corpus.blobs.values())
    assert set.intersection(*blob_sets)  # a pool layer appears in every repository


def test_seed_many_every_third_tag_is_an_index(registry: RegistryServer) -> None:
    corpus = seed_many(registry, repos=1, tags=3, index_every=3, prefix="support-idx")
    tags = corpus.tags["support-idx/repo-000"]
    media = {tag: registry_media_type(registry, "support-idx/repo-000", tag) for tag in tags}
    assert media == {"t0": OCI_MANIFEST, "t1": OCI_MANIFEST, "t2": OCI_INDEX}


def registry_media_type(registry: RegistryServer, repo: str, tag: str) -> str:
    response = requests.head(
        f"{registry.url}/v2/{repo}/manifests/{tag}",
        headers={"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.headers["Content-Type"]


def test_redis_url_answers(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(redis_prefix + "k", "v", ex=60)
        assert client.get(redis_prefix + "k") == b"v"
        client.delete(redis_prefix + "k")
    finally:
        client.close()


def test_private_redis_restarts(private_redis: RedisServer) -> None:
    client = redis.Redis.from_url(private_redis.url)
    try:
        assert client.ping()
        private_redis.kill()
        private_redis.start()
        assert client.ping()  # redis-py reconnects on the same port
    finally:
        client.close()
