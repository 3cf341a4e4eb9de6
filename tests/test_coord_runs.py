"""Run state: counters, failures, status, retention; the last-digest cache."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from syncworker.cli import main
from syncworker.config import load_config
from syncworker.coord import FAILED, FINISHED, RUNNING, Coordinator, RunFailure, RunStatus
from syncworker.coord.keys import RUN_RETENTION
from syncworker.coord.runstate import MAX_REASON_CHARS
from syncworker.runtime import Runtime
from tests.support.mirror import write_sync_config
from tests.support.redis_server import RedisServer

# The shared fixtures: coord (real Redis and fakeredis), real_coord.
pytest_plugins = ["tests.test_coord_support"]


def test_counters_failures_and_status_round_trip(coord: Coordinator) -> None:
    run_id = coord.start_run("docker")
    coord.incr(run_id, repos_total=3, bytes=1024)
    coord.incr(run_id, repos_done=1, images_copied=2, blobs_fetched=5)
    coord.incr(run_id, repos_failed=1, images_failed=1)
    coord.record_failure(run_id, "library/alpine", "3.20", "HTTP 500 from upstream")
    coord.record_failure(run_id, "library/busybox", None, "no such repository")

    status = coord.run_status(run_id)
    assert status is not None
    assert (status.id, status.registry, status.state, status.finished) == (
        run_id,
        "docker",
        RUNNING,
        None,
    )
    assert status.counters["repos_total"] == 3 and status.counters["bytes"] == 1024
    assert status.counters["blobs_linked"] == 0  # every counter exists from the start
    assert (status.done, status.total) == (2, 3)
    assert status.rate > 0
    assert status.eta_seconds is not None and status.eta_seconds >= 0
    assert status.failures == [
        RunFailure("library/alpine", "3.20", "HTTP 500 from upstream"),
        RunFailure("library/busybox", None, "no such repository"),
    ]
    as_json = json.loads(status.to_json())
    assert as_json["id"] == run_id and as_json["done"] == 2
    assert as_json["failures"][1] == {
        "repo": "library/busybox",
        "tag": None,
        "reason": "no such repository",
    }


def test_finish_run_keeps_first_state_and_sets_retention(coord: Coordinator) -> None:
    run_id = coord.start_run("docker")
    coord.finish_run(run_id, FAILED)
    coord.finish_run(run_id)  # a late duplicate does not rewrite history
    status = coord.run_status(run_id)
    assert status is not None and status.state == FAILED and status.finished is not None
    assert status.eta_seconds == 0.0
    for key in coord._keys.run_keys(run_id)[:2]:
        assert 0 < coord.client.pttl(key) <= RUN_RETENTION * 1000
    with pytest.raises(ValueError):
        coord.finish_run(run_id, "exploded")


def test_runs_newest_first_and_idempotent_start(coord: Coordinator) -> None:
    first = coord.start_run("docker", run_id="run-a")
    time.sleep(0.01)
    second = coord.start_run("quay", run_id="run-b")
    coord.incr(first, repos_total=1)
    assert coord.start_run("docker", run_id="run-a") == "run-a"  # retried trigger: same run
    assert [s.id for s in coord.runs()] == [second, first]
    assert [s.id for s in coord.runs(limit=1)] == [second]
    status = coord.run_status(first)
    assert status is not None and status.counters["repos_total"] == 1


def test_expired_runs_vanish_from_the_list(coord: Coordinator) -> None:
    run_id = coord.start_run("docker")
    for key in coord._keys.run_keys(run_id):
        coord.client.pexpire(key, 50)
    time.sleep(0.2)
    assert coord.run_status(run_id) is None
    assert coord.runs() == []


def test_reasons_are_redacted_and_capped(coord: Coordinator) -> None:
    run_id = coord.start_run("docker")
    secret = "hunter2-s3cret"
    reason = f"GET https://bob:{secret}@upstream/v2/ failed; Authorization: Bearer {secret}\n"
    coord.record_failure(run_id, "a/b", "v1", reason + "x" * 5000)
    status = coord.run_status(run_id)
    assert status is not None
    (failure,) = status.failures
    assert secret not in failure.reason and "bob" in failure.reason
    assert len(failure.reason) <= MAX_REASON_CHARS and "\n" not in failure.reason


def test_a_walk_retry_note_is_shown_redacted_until_cleared(coord: Coordinator) -> None:
    run_id = coord.start_run("docker")
    secret = "hunter2-s3cret"
    coord.note_walk_retry(run_id, f"try 1 of 9 failed: GET https://bob:{secret}@up/v2/ refused")
    status = coord.run_status(run_id)
    assert status is not None and status.walk_retry is not None
    assert status.walk_retry.startswith("try 1 of 9 failed") and secret not in status.walk_retry
    coord.note_walk_retry(run_id, None)
    assert coord.run_status(run_id) == replace(status, walk_retry=None)
    coord.note_walk_retry("no-such-run", "try 1 of 9 failed")  # makes no hash of its own
    assert coord.run_status("no-such-run") is None


def test_unknown_counter_and_bad_run_id_are_refused(coord: Coordinator) -> None:
    run_id = coord.start_run("docker")
    with pytest.raises(ValueError, match="repos_dnoe"):
        coord.incr(run_id, repos_dnoe=1)
    with pytest.raises(ValueError):
        coord.start_run("docker", run_id="../../etc")
    assert coord.run_status("no such run") is None


def test_writes_to_a_vanished_run_do_not_resurrect_it(coord: Coordinator) -> None:
    coord.incr("gone", repos_done=1)
    coord.record_failure("gone", "a/b", None, "late")
    assert coord.run_status("gone") is None
    assert coord.client.exists(*coord._keys.run_keys("gone")) == 0


def test_status_properties_without_redis() -> None:
    status = RunStatus(
        id="r",
        registry="docker",
        state=RUNNING,
        started=100.0,
        finished=None,
        counters={"repos_total": 10, "repos_done": 4, "repos_failed": 1},
    )
    assert (status.done, status.total) == (5, 10)
    ended = RunStatus("r", "docker", FINISHED, 100.0, 110.0, {"repos_total": 10, "repos_done": 10})
    assert ended.rate == pytest.approx(1.0)
    assert ended.eta_seconds == 0.0
    assert RunStatus("r", "docker", RUNNING, time.time()).eta_seconds is None


def test_concurrent_counts_add_up(coord: Coordinator) -> None:
    run_id = coord.start_run("docker")

    def count() -> None:
        for _ in range(50):
            coord.incr(run_id, images_copied=1, bytes=10)

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    status = coord.run_status(run_id)
    assert status is not None
    assert status.counters["images_copied"] == 400 and status.counters["bytes"] == 4000


def test_runs_kept_per_registry_with_status_listing_them(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    """``syncworker.runsKept: 3``: each registry keeps its run going on and its most recent
    finished ones, three in all; a run that starts forgets the older ones (their keys too),
    another registry's runs untouched."""
    settings = {"redis": private_redis.url, "runsKept": 3}
    config = write_sync_config(tmp_path, tmp_path / "store", [], settings=settings)
    with Runtime.open(load_config(config), upto="redis") as runtime:
        coord = runtime.coord
        assert coord is not None
        other = coord.start_run("other", "other-1")
        coord.finish_run(other)
        ids = [f"docker-{n}" for n in range(1, 6)]
        for run_id in ids:
            coord.start_run("docker", run_id)
            coord.finish_run(run_id, FAILED if run_id == "docker-2" else FINISHED)
        going_on = coord.start_run("docker", "docker-6")
        assert coord.run_status("docker-3") is None
        assert not coord.client.keys("syncworker:*docker-[123]*")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["status", "-c", str(config), "--json", "-n", "100"]) == 0
    listed = {run["id"]: run["state"] for run in json.loads(out.getvalue())}
    assert listed == {
        going_on: RUNNING,
        "docker-5": FINISHED,
        "docker-4": FINISHED,
        "other-1": FINISHED,
    }
