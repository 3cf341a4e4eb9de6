"""`syncworker status --watch`: a real worker and Redis (harness of test_celery_e2e); what
the watch shows is checked against Redis and the workers themselves."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import pytest

from tests import test_celery_e2e as e2e
from tests.support.cluster import DEADLINE, REGISTRY, REPOS, ROOT, SYNCWORKER, Cluster, trigger
from tests.support.corpus import Corpus
from tests.support.registry_server import RegistryServer

upstream = e2e.upstream
persistent_redis = e2e.persistent_redis
cluster = e2e.cluster

pytestmark = pytest.mark.slow


def test_watch_json_follows_the_run_to_its_end(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    cluster.worker("w1")
    run_id, _ = trigger(cluster)
    views: list[dict[str, Any]] = []
    with watching(cluster, "--json") as lines:
        deadline = time.monotonic() + DEADLINE
        for line in lines:
            views.append(json.loads(line))
            runs = views[-1]["runs"]
            if (runs and runs[0]["state"] == "finished") or time.monotonic() > deadline:
                break

    last = views[-1]
    run = cluster.coord().run_status(run_id)
    assert run is not None and last["runs"][0] == run.to_dict()
    assert last["runs"][0]["counters"]["repos_done"] == REPOS
    assert [w.split("@")[0] for w in last["workers"]] == ["w1"]
    assert set(last["queues"]) == {"syncworker.walk", "syncworker.repo", "syncworker.ondemand"}
    assert last["queues"]["syncworker.repo"] == 0  # the run is over: nothing waits
    assert last["next_runs"] == {REGISTRY: None}  # no schedule in this config, no beat


def test_watch_text_names_workers_queues_and_runs(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    cluster.worker("w1")
    shown = ""
    with watching(cluster) as lines:
        for line in lines:
            shown += line
            if line.startswith("next walk of"):
                break
    assert "workers: w1@" in shown
    assert "queues: syncworker.walk 0, syncworker.repo 0, syncworker.ondemand 0" in shown
    assert f"next walk of {REGISTRY}: not scheduled" in shown


# A nightly walk, at a minute no other schedule of the suite uses.
NIGHTLY_HOUR, NIGHTLY_MINUTE = 3, 17


def test_watch_shows_the_next_walk_as_beat_scheduled_it(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    cluster.write_config(schedule=f"{NIGHTLY_MINUTE} {NIGHTLY_HOUR} * * *")
    started = datetime.now(UTC)
    cluster.beat("beat1")
    nightly = started.replace(hour=NIGHTLY_HOUR, minute=NIGHTLY_MINUTE, second=0, microsecond=0)
    expected = nightly if nightly > started else nightly + timedelta(days=1)  # cron is in UTC
    deadline = time.monotonic() + DEADLINE
    with watching(cluster, "--json") as lines:
        for line in lines:
            due = json.loads(line)["next_runs"][REGISTRY]
            if due is not None or time.monotonic() > deadline:
                break
    assert due == expected.timestamp(), cluster.log("beat1")[-2000:]
    with watching(cluster) as lines:
        shown = next(line for line in lines if line.startswith(f"next walk of {REGISTRY}"))
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expected.timestamp()))
    assert shown.strip() == f"next walk of {REGISTRY}: {local}"


@contextmanager
def watching(cluster: Cluster, *options: str) -> Iterator[IO[str]]:
    """`status --watch 0.2` running; its output lines; ended by Ctrl-C, which exits 0
    having logged no warning (a clean cluster gives none to report)."""
    with subprocess.Popen(
        [*SYNCWORKER, "status", "--watch", "0.2", *options, "-c", str(cluster.config_path)],
        cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as watcher:  # fmt: skip
        assert watcher.stdout is not None and watcher.stderr is not None
        try:
            yield watcher.stdout
        finally:
            watcher.send_signal(signal.SIGINT)
            code = watcher.wait(timeout=DEADLINE)
        errors = watcher.stderr.read()
        assert code == 0, errors
        assert "WARNING" not in errors, errors
