"""Celery end to end: real redis-server, real `syncworker worker` processes, the
real registry upstream, a filesystem store checked with skopeo.

Every wait polls with a deadline (DEADLINE) and never asserts on elapsed time. Each test
has its own private Redis (queues and run state start empty) and its own store; the upstream
is shared by the module and read-only, so request counts are compared as differences.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import redis

from syncworker.celeryapp import create_app
from syncworker.config import load_config
from syncworker.worker.tasknames import TASK_SYNC_IMAGE, TASK_WALK
from tests.support.cluster import (
    DEADLINE,
    REGISTRY,
    REPOS,
    ROOT,
    SYNCWORKER,
    TAGS,
    Cluster,
    assert_same_as_embedded_sync,
    assert_store_matches,
    cluster,
    persistent_redis,
    queued_repos,
    queued_task,
    sync_repo_runs,
    trigger,
    unique_blobs,
    upstream,
    wait_finished,
    wait_for,
)
from tests.support.corpus import Corpus
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

__all__ = ["cluster", "persistent_redis", "upstream"]  # fixtures, imported for pytest
pytestmark = pytest.mark.slow


# -- tests --------------------------------------------------------------------------------


def test_walk_two_workers_each_repo_and_blob_once_and_second_trigger_noop(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    server, corpus = upstream
    blob_gets, tag_lists = server.blob_gets(), server.request_count("tags", "get")
    # No worker yet: the walk cannot move, so the next two triggers find it in progress.
    run_id, said = trigger(cluster)
    assert "started walk" in said
    # The way beat and other services trigger: by task name, no run id. It is queued behind
    # the walk's first page, so it runs while the walk is in progress.
    queued = redis.Redis.from_url(cluster.redis_url).lrange("syncworker.walk", 0, -1)
    assert [queued_task(raw) for raw in queued].count(TASK_WALK) == 1
    app = create_app(load_config(cluster.config_path))
    app.send_task(TASK_WALK, args=[REGISTRY])
    app.close()
    # A second `trigger --wait` finds the walk in progress and waits for that run.
    err_path = cluster.workdir / "second-trigger.err"
    with err_path.open("w") as err_file:
        second = subprocess.Popen(
            [*SYNCWORKER, "trigger", "--wait", "-c", str(cluster.config_path)], cwd=ROOT,
            env=cluster.env, stdout=subprocess.PIPE, stderr=err_file, text=True,
        )  # fmt: skip
    wait_for("the second trigger to attach", lambda: "already in progress" in err_path.read_text())
    cluster.worker("w1")
    cluster.worker("w2")
    out, _ = second.communicate(timeout=DEADLINE)
    assert second.returncode == 0, err_path.read_text()
    assert out.strip() == run_id

    status = cluster.coord().run_status(run_id)
    assert status is not None and status.state == "finished"
    assert (status.total, status.done, status.failures) == (REPOS, REPOS, [])
    assert status.counters["images_copied"] == REPOS * TAGS
    assert [r.id for r in cluster.coord().runs()] == [run_id]  # the no-ops started nothing
    runs = sync_repo_runs(cluster, ["w1", "w2"], corpus.repositories)
    assert runs == {repo: 1 for repo in corpus.repositories}
    assert server.request_count("tags", "get") - tag_lists == REPOS
    assert server.blob_gets() - blob_gets == len(unique_blobs(corpus))
    assert "this trigger is a no-op" in cluster.log("w1") + cluster.log("w2")
    assert_store_matches(cluster.store, corpus)
    assert_same_as_embedded_sync(cluster)
    shown = cluster.cli("status", run_id, "--json")
    assert json.loads(shown.stdout)["state"] == "finished"
    assert cluster.redis_url.split("@")[-1] not in shown.stdout  # nothing of the config


def test_sigkilled_worker_mid_run_then_run_completes(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    _, corpus = upstream
    cluster.worker("w1")
    cluster.worker("w2")
    coord = cluster.coord()
    run_id, _ = trigger(cluster)
    wait_for(
        "a few repositories done",
        lambda: (s := coord.run_status(run_id)) is not None and s.done >= 4,
    )
    cluster.kill("w1")
    cluster.worker("w3", wait=False)  # its replacement, as an orchestrator would start
    status = wait_finished(coord, run_id)
    assert (status.total, status.done, status.failures) == (REPOS, REPOS, [])
    assert status.state == "finished"
    assert_store_matches(cluster.store, corpus, skopeo_sample=len(corpus.repositories))


def test_walk_worker_killed_mid_walk_resumes_from_cursor(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    server, corpus = upstream
    cluster.page_size = 1  # one repository per page: 24 walk tasks, easy to interrupt
    # Each catalog page stalls half a second on its way, so the walk is still under way
    # when the test looks: unhindered, its 24 pages can end between two looks.
    stalling = FaultProxy(
        server.url, rate=1.0, faults=[Fault.STALL], paths=r"^/v2/_catalog", stall_seconds=0.5
    )
    with stalling:
        cluster.upstream_url = stalling.url
        cluster.write_config()
        catalog_gets = server.request_count("catalog", "get")
        cluster.worker("walker1", "-Q", "syncworker.walk")
        coord = cluster.coord()
        run_id, _ = trigger(cluster)
        wait_for(
            "the walk to pass a few pages",
            lambda: (coord.cursor(REGISTRY) or "") >= corpus.repositories[4],
        )
        os.killpg(cluster.procs["walker1"].pid, signal.SIGSTOP)  # freeze it mid-walk, then kill
        cursor = coord.cursor(REGISTRY)
        assert cursor is not None and coord.current_walk(REGISTRY) == run_id
        cluster.kill("walker1")
        cluster.worker("walker2", "-Q", "syncworker.walk")
        wait_for("the walk to end", lambda: coord.current_walk(REGISTRY) is None)

        assert "syncworker.walk_catalog" in cluster.log("walker2")
        queued = redis.Redis.from_url(cluster.redis_url).lrange("syncworker.repo", 0, -1)
        repos = sorted(repo for raw in queued for repo in queued_repos(raw))
        assert sorted(set(repos)) == corpus.repositories  # each repository fanned out
        # Once, but for the page the walker was frozen in: a repository sent and not yet marked
        # then is sent again by the page's redelivery (runs/catalogwalk.py marks only once sent).
        in_flight = corpus.repositories[corpus.repositories.index(cursor) + 1]
        assert {repo for repo in repos if repos.count(repo) > 1} <= {in_flight}, repos
        # One catalog request per page; the page in progress at the kill, and one the sweep may
        # have sent again while no walk worker was up, are read twice. A walk restarted from the
        # top would have read the five or more pages before the kill again.
        pages = len(corpus.repositories)
        assert server.request_count("catalog", "get") - catalog_gets <= pages + 3
        status = coord.run_status(run_id)
        assert status is not None and status.total == REPOS


def test_five_identical_sync_image_requests_make_one_copy(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    server, corpus = upstream
    repo = corpus.repositories[-1]
    app = create_app(load_config(cluster.config_path))
    manifests, blobs = server.request_count("manifest", "get", "200"), server.blob_gets()
    results = [app.send_task(TASK_SYNC_IMAGE, args=[REGISTRY, repo, "t0"]) for _ in range(5)]
    # All five are queued before the worker starts: its five threads take them at once.
    cluster.worker("ondemand", "-Q", "syncworker.ondemand", "-P", "threads", "--concurrency", "5")
    outcomes = [r.get(timeout=DEADLINE) for r in results]
    app.close()
    assert all(o["failures"] == [] for o in outcomes), outcomes
    assert sum(o["copied"] for o in outcomes) == 1, outcomes
    assert server.request_count("manifest", "get", "200") - manifests == 1  # one copy
    image_blobs = len(corpus.blobs[repo]) // TAGS  # config + 2 layers of t0
    assert server.blob_gets() - blobs == image_blobs
    out = subprocess.run(["skopeo", "inspect", f"oci:{cluster.store / repo}:t0"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert json.loads(out.stdout)["Digest"] == corpus.tags[repo]["t0"]
    # The same through the command line: already there, nothing copied, exit 0.
    again = cluster.cli("trigger", "--image", f"{repo}:t0", "--wait")
    assert again.returncode == 0, again.stderr
    assert "0 copied, 1 unchanged" in again.stderr
    task_id = again.stdout.strip()  # stdout: the id alone; stderr says what it names
    assert f"sent {REGISTRY}/{repo}:t0 as task {task_id} (status lists walks" in again.stderr


def test_beat_fires_walks_and_only_one_beat_replica_fires(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    cluster.write_config(pollInterval="2s")
    cluster.worker("w1", "-P", "threads", "--concurrency", "4")
    cluster.beat("beat1")
    wait_for("beat1 to hold the lock", lambda: "Sending due task" in cluster.log("beat1"))
    cluster.beat("beat2")
    coord = cluster.coord()
    wait_for("two walks fired by beat", lambda: len(coord.runs()) >= 2)
    first = coord.runs()[-1]
    assert wait_finished(coord, first.id).state == "finished"
    assert "Sending due task" not in cluster.log("beat2")  # the standby never fired


def test_redis_restarted_during_run(
    cluster: Cluster,
    upstream: tuple[RegistryServer, Corpus],
    persistent_redis: RedisServer,
) -> None:
    _, corpus = upstream
    cluster.worker("w1")
    cluster.worker("w2")
    coord = cluster.coord()
    run_id, _ = trigger(cluster)
    wait_for(
        "a few repositories done",
        lambda: (s := coord.run_status(run_id)) is not None and s.done >= 3,
    )
    persistent_redis.restart()
    status = wait_finished(coord, run_id)
    assert status.state == "finished"
    assert (status.total, status.done, status.failures) == (REPOS, REPOS, [])
    assert_store_matches(cluster.store, corpus)
