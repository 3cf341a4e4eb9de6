"""Chaos, Celery: workers SIGKILLed at random moments, Redis lost mid-run, and how soon a
killed worker's message comes back from a Redis broker.

Real redis-server, real `syncworker worker` processes, a real registry upstream; the store is
verified tag by tag (tests/support/chaos.py). The cluster is test_celery_e2e's, configured
with the visibility timeout only, so kombu's restore cadence is syncworker's default.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncworker.celeryapp import create_app
from syncworker.config import load_config
from syncworker.coord import RUNNING, Coordinator, RunStatus
from syncworker.errors import CoordError
from syncworker.worker.settings import RESTORE_SECONDS
from syncworker.worker.tasknames import QUEUE_REPO, TASK_SYNC_REPO
from tests.support.chaos import report, verified_tags
from tests.support.cluster import (
    REGISTRY,
    ROOT,
    SYNCWORKER,
    Cluster,
    broker_state,
    seeded_upstream,
    trigger,
    unique_blobs,
)
from tests.support.corpus import Corpus
from tests.support.mirror import layout_tags
from tests.support.ports import wait_until
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.support.stalling_proxy import StallingProxy

pytestmark = pytest.mark.chaos

SEED = 20261130
REPOS, TAGS = 30, 2
WORKERS, KILLS = 3, 10
# Short, so a killed worker's task comes back within the test (production: hours).
VISIBILITY_TIMEOUT = 8
# What a restore may lag behind its due time on a loaded 2-core box (event-loop ticks).
RESTORE_SLACK = 10.0
# A run with ten kills waits out the locks its dead workers held (60 s TTL each, in part
# concurrently) and the redelivery of their messages.
RUN_DEADLINE = 400.0
# A fetch in flight per blob thread of the worker killed (syncworker.blobConcurrency).
BLOB_CONCURRENCY = 4


@dataclass
class ChaosCluster(Cluster):
    """A Cluster whose config sets the visibility timeout and nothing else of kombu's."""

    def write_config(self, **registry: Any) -> None:
        url = self.upstream_url or self.upstream.url
        config = {
            "storage": {"rootDirectory": str(self.store)},
            "extensions": {"sync": {"registries": [{"urls": [url], "name": REGISTRY, **registry}]}},
            "syncworker": {
                "redis": self.redis_url,
                "blobConcurrency": BLOB_CONCURRENCY,
                "celery": {"broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT}},
            },
        }
        self.config_path.write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RegistryServer, Corpus]]:
    yield from seeded_upstream(REPOS, TAGS)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """Without persistence: a restart comes back empty, as a Redis that lost its data."""
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture
def cluster(
    tmp_path: Path, upstream: tuple[RegistryServer, Corpus], redis_server: RedisServer
) -> Iterator[ChaosCluster]:
    made = ChaosCluster(tmp_path, upstream[0], redis_server.url)
    yield made
    made.stop_all()


def wait_for(what: str, ready: Any, timeout: float, cluster: Cluster) -> None:
    if not wait_until(ready, timeout=timeout, interval=0.1):
        pytest.fail(f"timed out waiting for {what}: {broker_state(cluster.coord())}")


def run_status(coord: Coordinator, run_id: str) -> RunStatus | None:
    try:
        return coord.run_status(run_id)
    except CoordError:  # Redis down for a moment: not finished
        return None


def done_count(coord: Coordinator, run_id: str) -> int:
    status = run_status(coord, run_id)
    return status.done if status is not None else 0


def finished(coord: Coordinator, run_id: str) -> bool:
    status = run_status(coord, run_id)
    return status is not None and status.state != RUNNING


def own_blob(corpus: Corpus, repo: str) -> str:
    """A blob of ``repo`` that no other repository has (fetched only by its sync)."""
    others = set().union(*(b for r, b in corpus.blobs.items() if r != repo))
    return sorted(corpus.blobs[repo] - others)[0]


def complete_repos(cluster: Cluster) -> dict[str, Any]:
    """Repositories of the store holding all their tags."""
    tags = layout_tags(cluster.store)
    return {repo: t for repo, t in tags.items() if len(t) == TAGS}


def consuming(cluster: Cluster, names: list[str]) -> list[str]:
    """The workers of ``names`` that consume (a replacement may still be starting)."""
    return [name for name in names if " ready." in cluster.log(name)]


def test_killed_workers_message_comes_back_at_visibility_timeout_plus_restore(
    tmp_path: Path,
    upstream: tuple[RegistryServer, Corpus],
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, corpus = upstream
    repo = corpus.repositories[0]
    # after=1: the blob may be a config of a few hundred bytes; any blob stalls after one.
    with StallingProxy(server.url, own_blob(corpus, repo), after=1) as proxy:
        cluster = ChaosCluster(tmp_path, server, redis_server.url, upstream_url=proxy.url)
        # The killed worker holds the repository's lock: the next one waits out its TTL.
        config = yaml.safe_load(cluster.config_path.read_text())
        config["syncworker"]["lockTtl"] = "10s"
        cluster.config_path.write_text(yaml.safe_dump(config))
        try:
            # An idle worker on another queue: kombu restores from its event loop.
            cluster.worker("idle", "-Q", "syncworker.ondemand")
            cluster.worker("w1", "-Q", QUEUE_REPO, "-v")  # -v: Celery's "received" line
            app = create_app(load_config(cluster.config_path))
            app.send_task(TASK_SYNC_REPO, args=[REGISTRY, repo])  # no run: no sweep resends
            app.close()
            client = cluster.coord().client
            wait_for("w1 to hold the task", lambda: client.hlen("unacked") == 1, 60, cluster)
            wait_for("w1 to receive it", lambda: "received" in cluster.log("w1"), 60, cluster)
            wait_for("w1 stuck mid-blob", proxy.reached.is_set, 60, cluster)
            cluster.kill("w1")  # stuck mid-blob behind the proxy: the task cannot have ended
            killed = time.monotonic()
            # docs/CLUSTER.md: back in its queue after the visibility timeout + RESTORE_SECONDS.
            wait_for(
                "the message back in its queue",
                lambda: client.llen(QUEUE_REPO) == 1,
                VISIBILITY_TIMEOUT + RESTORE_SECONDS + RESTORE_SLACK,
                cluster,
            )
            back_after = time.monotonic() - killed
            proxy.release()
            cluster.worker("w2", "-Q", QUEUE_REPO)
            wait_for(
                "the repository mirrored", lambda: repo in complete_repos(cluster), 120, cluster
            )
        finally:
            cluster.stop_all()
    tags = {repo: corpus.tags[repo]}
    assert verified_tags(cluster.store, tags) == TAGS
    report(capsys, "redelivery after SIGKILL", visibility_timeout=VISIBILITY_TIMEOUT,
           restore_every=RESTORE_SECONDS, back_after_s=round(back_after, 1))  # fmt: skip


def test_ten_sigkills_of_random_workers_during_one_run(
    cluster: ChaosCluster,
    upstream: tuple[RegistryServer, Corpus],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, corpus = upstream
    rng = random.Random(SEED)
    live = [f"w{i}" for i in range(WORKERS)]
    for name in live:
        cluster.worker(name)
    coord = cluster.coord()
    gets, started = server.blob_gets(), time.monotonic()
    run_id, _ = trigger(cluster)
    # Random moments: after a random number of repositories done (so every kill falls
    # inside the run), then a random fraction of a second.
    kills: list[tuple[str, int]] = []
    for threshold in sorted(rng.sample(range(1, REPOS - 6), KILLS)):
        wait_for(f"{threshold} repositories done",
                 lambda t=threshold: done_count(coord, run_id) >= t,
                 RUN_DEADLINE, cluster)  # fmt: skip
        time.sleep(rng.uniform(0.0, 0.5))
        # A worker that is consuming (a replacement still starting up would be no test).
        wait_for("a worker up", lambda: bool(consuming(cluster, live)), 120, cluster)
        victim = rng.choice(consuming(cluster, live))
        live.remove(victim)
        status = run_status(coord, run_id)
        assert status is not None and status.state == RUNNING, "a kill after the run ended"
        cluster.kill(victim)
        kills.append((victim, status.done))
        replacement = f"w{WORKERS + len(kills) - 1}"
        cluster.worker(replacement, wait=False)  # as an orchestrator would restart it
        live.append(replacement)
    wait_for("the run to finish", lambda: finished(coord, run_id), RUN_DEADLINE, cluster)
    seconds, fetched = time.monotonic() - started, server.blob_gets() - gets

    status = run_status(coord, run_id)
    assert status is not None
    assert (status.state, status.total, status.done, status.failures) == (
        "finished", REPOS, REPOS, [])  # fmt: skip
    assert verified_tags(cluster.store, corpus.tags) == REPOS * TAGS
    unique = len(unique_blobs(corpus))
    # Once each, but for the fetches in flight in a killed worker (one repository at a time,
    # up to BLOB_CONCURRENCY blobs at once).
    assert unique <= fetched <= unique + KILLS * BLOB_CONCURRENCY
    report(capsys, "10 SIGKILLs during one run", workers=WORKERS,
           kills=[f"{name}@{done}/{REPOS}" for name, done in kills],
           blob_gets=f"{fetched} for {unique} unique", run_s=round(seconds, 1))  # fmt: skip


def test_redis_lost_mid_run_then_a_second_trigger_completes(
    cluster: ChaosCluster,
    upstream: tuple[RegistryServer, Corpus],
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, corpus = upstream
    cluster.worker("w1")
    cluster.worker("w2")
    coord = cluster.coord()
    gets = server.blob_gets()
    err = cluster.workdir / "first-trigger.err"
    with err.open("w") as err_file:
        first = subprocess.Popen(
            [*SYNCWORKER, "trigger", "--wait", "-c", str(cluster.config_path)], cwd=ROOT,
            env=cluster.env, stdout=subprocess.PIPE, stderr=err_file, text=True,
        )  # fmt: skip
    wait_for("a run", lambda: bool(coord.runs()), 60, cluster)
    run_id = coord.runs()[0].id
    wait_for("a few repositories done",
             lambda: done_count(coord, run_id) >= 3, 120, cluster)  # fmt: skip
    done_before = done_count(coord, run_id)
    redis_server.kill()
    redis_server.start()  # empty: no persistence

    out, _ = first.communicate(timeout=120)
    said = err.read_text()
    assert first.returncode == 1, said
    assert out.strip() == run_id
    assert f"run {run_id}: its state is gone from Redis" in said, said
    assert "trigger again" in said

    second = cluster.cli("trigger", "--wait", timeout=RUN_DEADLINE)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() != run_id
    assert verified_tags(cluster.store, corpus.tags) == REPOS * TAGS
    report(capsys, "Redis lost mid-run", repos_done_before_loss=f"{done_before}/{REPOS}",
           blob_gets=f"{server.blob_gets() - gets} for {len(unique_blobs(corpus))} unique",
           first_trigger=said.strip().splitlines()[-1][:60] + "...")  # fmt: skip
