"""A run counted per image as it happens, on real Celery workers (the harness of
tests/support/cluster.py: a private Redis, `syncworker worker` processes, a real registry
slowed by the configured rate limit): `status --json` shows a repository's images before the
repository ends, and a repository whose worker is killed mid-way and that is delivered
again ends with each image counted exactly once."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncworker.cli import main
from syncworker.coord import Coordinator, RunStatus
from tests.support import cluster as e2e
from tests.support.cluster import DEADLINE, Cluster, seeded_upstream, trigger, wait_finished
from tests.support.corpus import Corpus
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

persistent_redis = e2e.persistent_redis

pytestmark = pytest.mark.slow

# Repositories of many tags, fetched at a few requests a second (zot's reqPerSec, held by
# the workers): each takes seconds, over which its images end one by one.
REPOS, TAGS = 2, 16
REQ_PER_SEC = 6


@pytest.fixture(scope="module")
def many_tags() -> Iterator[tuple[RegistryServer, Corpus]]:
    yield from seeded_upstream(REPOS, TAGS)


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
    not the seconds a fresh interpreter takes on a loaded machine, so the polls see the
    first repository's images end one by one."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["status", *args, "-c", str(cluster.config_path)])
    assert code == 0, err.getvalue()
    return out.getvalue()


# Needs several status polls within the first repository, which the machine may not give.
@pytest.mark.timing
def test_status_json_counts_images_before_the_repository_ends(slow_cluster: Cluster) -> None:
    slow_cluster.worker("w1")
    run_id, _ = trigger(slow_cluster)
    polls: list[dict[str, Any]] = []
    texts: list[str] = []  # the text form, until it has shown a repository in flight
    deadline = time.monotonic() + DEADLINE
    while not polls or polls[-1]["state"] == "running":
        assert time.monotonic() < deadline, polls[-1:]
        polls.append(json.loads(_status(slow_cluster, run_id, "--json")))
        if polls[-1]["in_flight"] and not any("in flight" in t for t in texts):
            texts.append(_status(slow_cluster, run_id))

    first_repository = [p for p in polls if p["counters"]["repos_done"] == 0]
    copied = [p["counters"]["images_copied"] for p in first_repository]
    assert len({c for c in copied if c > 0}) >= 2, copied  # rising, with the repository open
    assert copied == sorted(copied)
    assert all(p["in_flight"] == 1 for p in first_repository if p["counters"]["images_copied"])
    assert any(re.search(r" [1-9]\d* images copied, .*\(1 repos in flight\)", t) for t in texts)
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
