"""Celery workers pushing into a registry: the same tasks and walk as for a layout store,
with the destination's blob hints shared through Redis, so that across workers each unique
blob is fetched from the upstream once and uploaded once, and every other copy is a mount."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from syncworker.oci import MANIFEST_ACCEPT
from tests.support.cluster import Cluster, seeded_upstream, trigger, unique_blobs
from tests.support.corpus import Corpus
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.slow

REPOS, TAGS = 8, 2


class DestCluster(Cluster):
    """The Celery test cluster, configured with ``syncworker.destination``."""

    destination: str = ""

    def write_config(self, **registry: Any) -> None:
        super().write_config(**registry)
        config = yaml.safe_load(self.config_path.read_text())
        if self.destination:
            config["syncworker"]["destination"] = {"url": self.destination}
        self.config_path.write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RegistryServer, Corpus]]:
    yield from seeded_upstream(REPOS, TAGS)


@pytest.fixture
def dest_cluster(
    tmp_path: Path, upstream: tuple[RegistryServer, Corpus], private_redis: RedisServer
) -> Iterator[tuple[DestCluster, RegistryServer]]:
    dest = RegistryServer()
    made = DestCluster(tmp_path, upstream[0], private_redis.url)
    made.destination = dest.url
    made.write_config()
    yield made, dest
    made.stop_all()
    dest.stop()


def test_two_workers_push_each_blob_once_and_mount_the_rest(
    dest_cluster: tuple[DestCluster, RegistryServer], upstream: tuple[RegistryServer, Corpus]
) -> None:
    cluster, dest = dest_cluster
    server, corpus = upstream
    blob_gets = server.blob_gets()
    cluster.worker("w1")
    cluster.worker("w2")
    done = cluster.cli("trigger", "--wait")
    assert done.returncode == 0, done.stderr + cluster.log("w1") + cluster.log("w2")
    run_id = done.stdout.strip()
    status = cluster.coord().run_status(run_id)
    assert status is not None and (status.done, status.failures) == (REPOS, [])

    unique = unique_blobs(corpus)
    assert server.blob_gets() - blob_gets == len(unique)
    assert dest.request_count("blob_upload_chunk", "put") == len(unique)
    copies = sum(len(blobs) for blobs in corpus.blobs.values())
    assert dest.request_count("blob_upload", "post", "201") == copies - len(unique)
    for repo, tags in corpus.tags.items():
        for tag, digest in tags.items():
            got = requests.get(
                f"{dest.url}/v2/{repo}/manifests/{tag}",
                headers={"Accept": MANIFEST_ACCEPT},
                timeout=30,
            )
            assert "sha256:" + hashlib.sha256(got.content).hexdigest() == digest, f"{repo}:{tag}"
    host = dest.url.split("://", 1)[1]
    repo = corpus.repositories[0]
    tag, digest = next(iter(corpus.tags[repo].items()))
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo}:{tag}"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest

    # A second walk changes nothing: the destination serves reads only.
    writes = dest.request_count(method="put") + dest.request_count(method="post")
    second, _ = trigger(cluster, "--wait")
    assert second != run_id
    assert dest.request_count(method="put") + dest.request_count(method="post") == writes
