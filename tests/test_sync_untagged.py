"""A repository the catalog lists without tags is skipped and counted as skipped, in
``syncworker sync`` and in a run of Celery workers; a repository someone named that
answers 404 stays a failure.

distribution lists every repository that holds a blob, so a push that stopped after its
blobs leaves a repository whose ``tags/list`` answers 404 ``NAME_UNKNOWN``: the upstream
here is a real registry left in that state, beside a repository whose only manifest was
deleted (its tag list is ``null``) and one whole image.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support.cluster import REGISTRY, Cluster, wait_finished
from tests.support.images import make_image, make_layer
from tests.support.mirror import layout_tags, run_sync, write_sync_config
from tests.support.push import push_blob, push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

BLOB_ONLY, DELETED, WHOLE = "half/pushed", "gone/image", "team/app"


@pytest.fixture(scope="module")
def upstream() -> Iterator[RegistryServer]:
    """A registry with a blob-only repository, a repository whose manifest was deleted and
    one with a tagged image."""
    server = RegistryServer()
    try:
        push_blob(server.url, BLOB_ONLY, make_layer(seed="half"))
        deleted = make_image(seed="gone")
        push_image(server.url, DELETED, "v1", deleted)
        answer = requests.delete(f"{server.url}/v2/{DELETED}/manifests/{deleted.digest}")
        assert answer.status_code == 202, answer.text
        push_image(server.url, WHOLE, "v1", make_image(seed="whole"))
        catalog = requests.get(f"{server.url}/v2/_catalog", timeout=10).json()
        assert set(catalog["repositories"]) == {BLOB_ONLY, DELETED, WHOLE}
        tags = requests.get(f"{server.url}/v2/{BLOB_ONLY}/tags/list", timeout=10)
        assert tags.status_code == 404 and "NAME_UNKNOWN" in tags.text
        yield server
    finally:
        server.stop()


def test_sync_skips_a_catalogued_repository_without_tags(
    upstream: RegistryServer, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    config = write_sync_config(tmp_path, root, [{"urls": [upstream.url]}])
    done = run_sync(config, "--json")
    assert done.code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["failures"] == []
    assert summary["repositories"] == 3 and summary["repositories_skipped"] == 1
    [skipped] = summary["skipped"]
    assert skipped["repository"] == BLOB_ONLY and "404" in skipped["reason"]
    assert set(layout_tags(root)) == {WHOLE}

    text = run_sync(config)
    assert text.code == 0, text.stderr
    assert "0 failures, 1 repository skipped" in text.stdout
    assert f"SKIPPED {upstream.host}/{BLOB_ONLY}: listed by the catalog without tags" in text.stdout
    planned = run_sync(config, "--dry-run")
    assert planned.code == 0 and "skipped: listed by the catalog without tags" in planned.stdout
    metrics = tmp_path / "sync.prom"
    assert run_sync(config, "--quiet", "--metrics-file", str(metrics)).code == 0
    skipped_line = f'syncworker_repositories_total{{outcome="skipped",registry="{upstream.host}"}}'
    assert skipped_line in metrics.read_text()


def test_a_named_repository_that_answers_404_is_a_failure(
    upstream: RegistryServer, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    entry = {"urls": [upstream.url], "repos": [BLOB_ONLY, WHOLE]}
    done = run_sync(write_sync_config(tmp_path, root, [entry]), "--json")
    assert done.code == 1
    summary = json.loads(done.stdout)
    assert summary["repositories_skipped"] == 0
    [failure] = summary["failures"]
    assert failure["repository"] == BLOB_ONLY and "404" in failure["reason"]


@pytest.fixture
def workers(tmp_path: Path, upstream: RegistryServer) -> Iterator[Callable[[], Cluster]]:
    redis_server = RedisServer()
    made: list[Cluster] = []

    def start() -> Cluster:
        cluster = Cluster(tmp_path, upstream, redis_server.url)
        made.append(cluster)
        cluster.worker("w1")
        return cluster

    yield start
    for cluster in made:
        cluster.stop_all()
    redis_server.close()


@pytest.mark.slow
def test_a_worker_run_counts_it_skipped_and_succeeds(workers: Callable[[], Cluster]) -> None:
    cluster = workers()
    done = cluster.cli("trigger", "--wait")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    status = wait_finished(cluster.coord(), run_id)
    assert status.state == "finished" and status.failures == []
    counters = status.counters
    assert (counters["repos_total"], counters["repos_done"], counters["repos_skipped"]) == (3, 2, 1)
    assert counters.get("repos_failed", 0) == 0
    shown = cluster.cli("status", run_id)
    assert f"{REGISTRY} finished: 3/3 repos (1 skipped)" in shown.stdout, shown.stdout
    assert f"{REGISTRY}/{BLOB_ONLY}: skipped, listed by the catalog" in cluster.log("w1")
