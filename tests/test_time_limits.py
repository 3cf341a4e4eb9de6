"""Celery's soft time limit striking while a repository's blob downloads on another thread:
a blob of the upstream trickles a byte every quarter second (a proxy), so the limit (12 s)
strikes in the middle of it. The download stops at once rather than holding its blob's
flight and a connection until the hard limit, and the failure names the limit: in a walk's
batch and in an on-demand image alike. Real workers, real Redis, a real registry behind the
proxy (the harness of test_repo_batches.py)."""

from __future__ import annotations

import pytest
import requests

from tests.support.cluster import (
    REPOS,
    Cluster,
    cluster,
    persistent_redis,
    sync_repo_runs,
    trigger,
    upstream,
    wait_finished,
    wait_for,
)
from tests.support.corpus import Corpus
from tests.support.registry_server import RegistryServer
from tests.support.stalling_proxy import StallingProxy
from tests.test_repo_batches import LIMIT, keep_sweep_out

__all__ = ["cluster", "persistent_redis", "upstream"]  # fixtures, imported for pytest

pytestmark = pytest.mark.slow

SOFT_LIMIT_STRUCK = f"SoftTimeLimitExceeded: Celery's task_soft_time_limit ({LIMIT}s) struck"
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json"


def _own_blob(server: RegistryServer, corpus: Corpus) -> tuple[str, str, str, int]:
    """A blob of the first repository's image that no other repository has: the repository,
    the image's tag, the blob's digest and size."""
    repo, *others = corpus.repositories
    shared = set().union(*(corpus.blobs[other] for other in others))
    for tag in sorted(corpus.tags[repo]):
        answer = requests.get(
            f"{server.url}/v2/{repo}/manifests/{tag}",
            headers={"Accept": MANIFEST_TYPES},
            timeout=30,
        )
        answer.raise_for_status()
        manifest = answer.json()
        for blob in (manifest["config"], *manifest["layers"]):
            if blob["digest"] not in shared:
                return repo, tag, blob["digest"], blob["size"]
    raise AssertionError(f"{repo} has no blob of its own")


def _struck(cluster: Cluster, proxy: StallingProxy, size: int) -> None:
    """The trickled download ended, cut short (the client went), and the limit struck."""
    wait_for("the trickled download to end", proxy.ended.is_set)
    assert 0 < proxy.sent < size
    assert "unexpected" not in cluster.log("w1")


def test_the_soft_time_limit_in_a_batch_stops_that_repositorys_downloads(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    """The repository fails with the limit's name; the others of the walk sync once."""
    repo, _, blob, size = _own_blob(*upstream)
    others = [other for other in upstream[1].repositories if other != repo]
    with StallingProxy(upstream[0].url, blob, after=1, trickle=1) as proxy:
        cluster.upstream_url = proxy.url
        keep_sweep_out(cluster, task_soft_time_limit=LIMIT, task_time_limit=10 * LIMIT)
        cluster.worker("w1")
        run_id, _ = trigger(cluster)
        status = wait_finished(cluster.coord(), run_id)
        assert (status.total, status.done, status.counters["repos_failed"]) == (REPOS, REPOS, 1)
        [failure] = status.failures
        assert (failure.repo, failure.reason) == (repo, SOFT_LIMIT_STRUCK)
        _struck(cluster, proxy, size)
    # The tag ran on another thread than the task's: its failure names what stopped it.
    assert "the end of its job (SoftTimeLimitExceeded) reached" in cluster.log("w1")
    assert sync_repo_runs(cluster, ["w1"], others) == dict.fromkeys(others, 1)


def test_the_soft_time_limit_fails_an_on_demand_image_by_its_name(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    """``sync_image`` alone: the trigger's wait ends with the limit named, not as an
    unexpected error with a traceback."""
    repo, tag, blob, size = _own_blob(*upstream)
    with StallingProxy(upstream[0].url, blob, after=1, trickle=1) as proxy:
        cluster.upstream_url = proxy.url
        keep_sweep_out(cluster, task_soft_time_limit=LIMIT, task_time_limit=10 * LIMIT)
        cluster.worker("w1")
        done = cluster.cli("trigger", "--image", f"{repo}:{tag}", "--wait")
        assert done.returncode != 0 and SOFT_LIMIT_STRUCK in done.stdout + done.stderr, done
        _struck(cluster, proxy, size)
