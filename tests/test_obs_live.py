"""A run counted per image as it happens, on real Celery workers (the harness of
tests/support/cluster.py: a private Redis, `syncworker worker` processes, a real registry):
`status --json` shows a repository's images before the repository ends (the registry behind
proxies that hold chosen blobs until the test lets them go), and a repository whose worker
is killed mid-way and that is delivered again ends with each image counted exactly once
(the registry slowed by the configured rate limit)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from syncworker.cli import main
from syncworker.coord import Coordinator, RunStatus
from syncworker.observe.live import LIVE_INTERVAL
from tests.support import cluster as e2e
from tests.support.cluster import DEADLINE, Cluster, seeded_upstream, trigger, wait_finished
from tests.support.corpus import Corpus
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.support.stalling_proxy import StallingProxy

persistent_redis = e2e.persistent_redis

pytestmark = pytest.mark.slow

# Repositories of many tags, fetched at a few requests a second (zot's reqPerSec, held by
# the workers): each takes seconds, over which its images end one by one.
REPOS, TAGS = 2, 16
REQ_PER_SEC = 6
# Tags of the first repository whose image the upstream holds until the test lets it go.
HELD_TAGS = ("t4", "t8", "t12")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def many_tags() -> Iterator[tuple[RegistryServer, Corpus]]:
    yield from seeded_upstream(REPOS, TAGS)


def _config_blob(server: RegistryServer, repo: str, tag: str) -> str:
    """The config blob of ``repo:tag``'s image: its own, shared with no other image."""
    answer = requests.get(
        f"{server.url}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}, timeout=30
    )
    answer.raise_for_status()
    digest: str = answer.json()["config"]["digest"]
    return digest


@pytest.fixture
def held_cluster(
    tmp_path: Path, many_tags: tuple[RegistryServer, Corpus], persistent_redis: RedisServer
) -> Iterator[tuple[Cluster, list[StallingProxy]]]:
    """A cluster whose worker syncs one tag at a time, from an upstream that holds the config
    blob of each of HELD_TAGS of the first repository until released: a chain of proxies,
    one per blob."""
    server, corpus = many_tags
    proxies: list[StallingProxy] = []
    url = server.url
    for tag in HELD_TAGS:
        digest = _config_blob(server, corpus.repositories[0], tag)
        proxies.append(StallingProxy(url, digest, after=1))
        url = proxies[-1].url
    made = Cluster(
        tmp_path, server, persistent_redis.url, upstream_url=url, settings={"tagConcurrency": 1}
    )
    yield made, list(proxies)
    made.stop_all()
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def slow_cluster(
    tmp_path: Path, many_tags: tuple[RegistryServer, Corpus], persistent_redis: RedisServer
) -> Iterator[Cluster]:
    made = Cluster(tmp_path, many_tags[0], persistent_redis.url)
    made.write_config(reqPerSec=REQ_PER_SEC)
    yield made
    made.stop_all()


def _images(counters: dict[str, int]) -> int:
    return counters["images_copied"] + counters["images_skipped"] + counters["images_failed"]


def _status(cluster: Cluster, *args: str) -> str:
    """``syncworker status ARGS -c CONFIG``, run in this process: a poll takes milliseconds,
    not the seconds a fresh interpreter takes on a loaded machine."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["status", *args, "-c", str(cluster.config_path)])
    assert code == 0, err.getvalue()
    return out.getvalue()


def test_status_json_counts_images_before_the_repository_ends(
    held_cluster: tuple[Cluster, list[StallingProxy]],
) -> None:
    """The first repository's tags are synced one at a time, three of them held at a blob.
    The first two held are each let go once LIVE_INTERVAL has passed since they were
    reached, so that their image, ending, writes the repository's counts (a worker writes
    them at most that often, and only as an image ends); the next is let go only once
    `status` has shown that count. So `status` shows two counts, rising, while the
    repository is open (the third held)."""
    cluster, held = held_cluster
    cluster.worker("w1")
    run_id, _ = trigger(cluster)
    polls: list[dict[str, Any]] = []

    def until(what: str, ready: Callable[[], bool]) -> None:
        """Poll ``status --json`` until ``ready``."""
        deadline = time.monotonic() + DEADLINE
        while not ready():
            assert time.monotonic() < deadline, f"no {what}: {polls[-1:]}"
            polls.append(json.loads(_status(cluster, run_id, "--json")))
            time.sleep(0.05)

    def copied() -> int:
        return int(polls[-1]["counters"]["images_copied"]) if polls else 0

    texts = []  # the text form, while the repository is held open
    for _ in range(2):
        until("held blob reached", lambda: any(p.reached.is_set() for p in held))
        [proxy] = [p for p in held if p.reached.is_set()]  # one tag at a time
        before = copied()
        time.sleep(LIVE_INTERVAL)
        held.remove(proxy)
        proxy.release()
        until("count of the held image", lambda before=before: copied() > before)
        texts.append(_status(cluster, run_id))
    for proxy in held:
        proxy.release()
    until("end of the run", lambda: bool(polls) and polls[-1]["state"] != "running")

    first_repository = [p for p in polls if p["counters"]["repos_done"] == 0]
    copied_seen = [p["counters"]["images_copied"] for p in first_repository]
    assert len({c for c in copied_seen if c > 0}) >= 2, copied_seen  # rising, while open
    assert copied_seen == sorted(copied_seen)
    assert all(p["in_flight"] == 1 for p in first_repository if p["counters"]["images_copied"])
    assert all(re.search(r" [1-9]\d* images copied, .*\(1 repos in flight\)", t) for t in texts)
    last = polls[-1]
    assert last["state"] == "finished" and last["counters"]["repos_done"] == REPOS
    assert last["counters"]["images_copied"] == REPOS * TAGS  # results replaced live counts
    assert (last["live"], last["in_flight"]) == ({}, 0)


def test_a_repository_delivered_again_after_its_worker_died_counts_each_image_once(
    slow_cluster: Cluster,
) -> None:
    slow_cluster.worker("w1")
    coord = slow_cluster.coord()
    run_id, _ = trigger(slow_cluster)
    _wait_status(coord, run_id, lambda s: s.counters["images_copied"] >= TAGS // 4)
    slow_cluster.kill("w1")  # half-way through the repository
    killed = coord.run_status(run_id)
    assert killed is not None and killed.counters["repos_done"] == 0
    assert 0 < _images(killed.counters) < TAGS and killed.in_flight == 1  # the first one
    # The dead worker's repository lock would block the redelivery until its TTL ran out
    # (a minute): let it run out now.
    for key in coord.client.scan_iter("syncworker:lock:repo:*"):
        coord.client.pexpire(key, 100)

    slow_cluster.worker("w2")
    seen: list[RunStatus] = []
    while (status := coord.run_status(run_id)) is not None and status.state == "running":
        seen.append(status)
        time.sleep(0.1)
    final = wait_finished(coord, run_id)
    assert final.state == "finished" and final.failures == []
    assert _images(final.counters) == REPOS * TAGS and final.counters["images_failed"] == 0
    # Never a counted repository's live counts on top of its result, nor the killed
    # delivery's beside the redelivery's: live counts only of repositories not yet done.
    assert any(s.done == 1 for s in seen)  # watched while one was counted, one not
    for s in seen:
        assert s.in_flight <= s.total - s.done, s
        in_flight = _images(s.live) if s.live else 0
        assert in_flight <= TAGS * s.in_flight, s
        assert _images(s.counters) - in_flight == TAGS * s.done, s


def _wait_status(coord: Coordinator, run_id: str, ready: Any) -> RunStatus:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        status = coord.run_status(run_id)
        if status is not None and ready(status):
            return status
        time.sleep(0.05)
    pytest.fail(f"run {run_id} never got there: {coord.run_status(run_id)}")
