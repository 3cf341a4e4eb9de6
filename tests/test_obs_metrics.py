"""Prometheus metrics of a real worker during a real run, checked against the upstream
registry's own request counters (real redis-server, real `syncworker worker` with two
prefork children, the real registry; the Celery cluster harness of tests/support/cluster.py)."""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import cluster as e2e
from tests.support.cluster import (
    REGISTRY,
    REPOS,
    TAGS,
    Cluster,
    trigger,
    unique_blobs,
    wait_finished,
)
from tests.support.corpus import Corpus
from tests.support.ports import free_port
from tests.support.registry_server import RegistryServer

# The end-to-end harness's fixtures: a seeded upstream, a private Redis, a cluster on them.
upstream = e2e.upstream
persistent_redis = e2e.persistent_redis
cluster = e2e.cluster

pytestmark = pytest.mark.slow

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(port: int) -> Samples:
    """Every sample served on ``port``: name -> sorted labels -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return found


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if wanted <= set(key))


def stored_bytes(store: Path, digests: set[str]) -> int:
    """The size of each blob once (repositories link the same file)."""
    sizes = {}
    for path in store.glob("*/*/blobs/sha256/*"):
        sizes[f"sha256:{path.name}"] = path.stat().st_size
    return sum(sizes[d] for d in digests)


def test_worker_metrics_match_the_registry_counters(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    server, corpus = upstream
    port = free_port()
    ok_before, gets_before = (
        server.request_count(code="200"),
        server.request_count(method="get", code="200"),
    )
    missing_before = server.request_count(code="404")
    blob_gets_before = server.blob_gets()
    cluster.worker("w1", "--metrics-port", str(port), "--concurrency", "2")
    before = scrape(port)  # served before any task: nothing counted yet
    assert total(before, "syncworker_upstream_requests_total") == 0

    run_id, _ = trigger(cluster)
    during = scrape(port)  # scraped while the run goes on (whatever it has reached)
    status = wait_finished(cluster.coord(), run_id)
    assert status.state == "finished" and status.failures == []
    after = scrape(port)

    # Every answer the workers got is one the registry counted, by method and status. (Its
    # counters know only its own routes: the referrers API it lacks answers 404 uncounted.)
    sent = total(after, "syncworker_upstream_requests_total", registry=REGISTRY, code="200")
    assert sent == server.request_count(code="200") - ok_before > 0
    gets = total(after, "syncworker_upstream_requests_total", method="GET", code="200")
    assert gets == server.request_count(method="get", code="200") - gets_before
    assert total(after, "syncworker_upstream_requests_total", code="404") >= (
        server.request_count(code="404") - missing_before
    )
    assert total(during, "syncworker_upstream_requests_total") <= sent
    # Each unique blob fetched once (both children summed), the rest linked.
    fetched = total(after, "syncworker_blobs_total", registry=REGISTRY, outcome="fetched")
    assert fetched == server.blob_gets() - blob_gets_before == len(unique_blobs(corpus))
    assert total(after, "syncworker_blobs_total", outcome="linked") > 0
    assert total(after, "syncworker_blob_bytes_total", registry=REGISTRY) == stored_bytes(
        cluster.store, unique_blobs(corpus)
    )
    assert total(after, "syncworker_blob_transfer_seconds_count") == fetched
    # Images and repositories as the run counted them.
    assert total(after, "syncworker_images_total", outcome="copied") == REPOS * TAGS
    assert total(after, "syncworker_images_total", outcome="failed") == 0
    assert total(after, "syncworker_repositories_total", outcome="ok") == REPOS
    assert total(after, "syncworker_repository_sync_seconds_count", registry=REGISTRY) == REPOS
    # The runs metrics, from Redis: the run started (in progress while it went on) and
    # finished ok, and the last success is its end.
    assert total(before, "syncworker_runs_started_total") == 0
    assert total(after, "syncworker_runs_started_total", registry=REGISTRY) == 1
    assert total(during, "syncworker_runs_in_progress", registry=REGISTRY) == (
        1 - total(during, "syncworker_runs_finished_total", registry=REGISTRY)
    )
    assert total(after, "syncworker_runs_finished_total", registry=REGISTRY, outcome="ok") == 1
    assert total(after, "syncworker_runs_finished_total", outcome="failed") == 0
    assert total(after, "syncworker_runs_in_progress", registry=REGISTRY) == 0
    assert status.finished is not None
    last = total(after, "syncworker_last_successful_run_timestamp_seconds", registry=REGISTRY)
    assert last == pytest.approx(status.finished)
