"""Celery tasks meeting what should not happen: a bug's exception, a worker killed under the
same message again and again, a catalog whose pages loop. Real workers, real Redis; the
harness is test_celery_e2e.py's. Each ends its run with a named failure, never a task that
dies with a foreign exception type or a message that loops."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from syncworker.coord import RunFailure
from syncworker.worker.policy import MAX_DELIVERIES
from syncworker.worker.tasknames import QUEUE_REPO, QUEUE_WALK
from tests.support.cluster import (
    REGISTRY,
    REPOS,
    Cluster,
    cluster,
    persistent_redis,
    trigger,
    upstream,
    wait_finished,
    wait_for,
)
from tests.support.corpus import Corpus
from tests.support.faults import BUG_ENV, GATE_HELD, GATE_OPEN, KILL_ENV, KILL_GATE_ENV
from tests.support.hostile import Answer, HostileRegistry, json_answer
from tests.support.images import make_image
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

__all__ = ["cluster", "persistent_redis", "upstream"]  # fixtures, imported for pytest

pytestmark = pytest.mark.slow

FAULTS = ("-I", "tests.support.faults")
# How Celery reports a task that ended with an exception.
CELERY_TASK_FAILED = re.compile(r"Task syncworker\.\w+\[[^\]]+\] raised unexpected")
# How the sweep reports repositories it sent again (not a walk page).
RESENT = re.compile(r"made no progress for \S+: sending again \d+ repositories")
# How Celery reports a pool process that died under a task.
POOL_PROCESS_KILLED = re.compile(r"Process '\S+' pid:\d+ exited with 'signal 9 \(SIGKILL\)'")


def start_failing(cluster: Cluster, fault_env: str, repo: str, *options: str) -> str:
    """Start a walk with the fault ``fault_env`` aimed at ``repo`` in worker "w1" (started
    with ``options``); its run id."""
    cluster.extra_env[fault_env] = repo
    cluster.worker("w1", *FAULTS, *options)
    run_id, _ = trigger(cluster)
    return run_id


def failure_of(cluster: Cluster, run_id: str, repo: str) -> RunFailure:
    """The run ends, every repository counted, ``repo`` its one failure (returned)."""
    status = wait_finished(cluster.coord(), run_id)
    assert (status.total, status.done, status.counters["repos_failed"]) == (REPOS, REPOS, 1)
    [failure] = status.failures
    assert failure.repo == repo
    return failure


def test_a_bug_in_a_task_is_a_named_failure_of_its_run(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    repo = upstream[1].repositories[3]
    failure = failure_of(cluster, start_failing(cluster, BUG_ENV, repo), repo)
    assert "unexpected KeyError" in failure.reason
    assert not CELERY_TASK_FAILED.search(cluster.log("w1"))


def test_a_repository_whose_worker_dies_every_time_costs_a_few_kills_per_run(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    """The sweep sends the stuck repository again (a new message) while its first message
    is still being delivered again and again: all of them count as one work, so the run
    pays at most MAX_DELIVERIES dead workers for it, not that many per message.

    The order is forced: the repository's first start is held in its worker until the sweep
    (in a worker of its own, on the walk queue) has sent it again; only then do the kills
    begin, with two messages of it in the broker."""
    cluster.sweep_seconds = 1
    gate = tmp_path / "gate"
    gate.mkdir()
    cluster.extra_env[KILL_GATE_ENV] = str(gate)
    cluster.worker("walker", "-Q", QUEUE_WALK)
    # The last repository: once it alone is left, the run stops moving and is swept.
    repo = upstream[1].repositories[-1]
    run_id = start_failing(cluster, KILL_ENV, repo, "-Q", QUEUE_REPO)
    wait_for("the repository's first start", (gate / GATE_HELD).exists)
    seen = len(cluster.log("walker"))
    wait_for("the sweep", lambda: RESENT.search(cluster.log("walker"), seen) is not None)
    (gate / GATE_OPEN).touch()

    failure = failure_of(cluster, run_id, repo)
    started = re.search(r"started (\d+) times without finishing", failure.reason)
    assert started is not None and int(started.group(1)) > MAX_DELIVERIES, failure.reason
    assert 0 < len(POOL_PROCESS_KILLED.findall(cluster.log("w1"))) <= MAX_DELIVERIES


class Pages(dict[tuple[str, str], Answer]):
    """Routes where the catalog answers ``pages`` in turn, whatever the request asks."""

    def __init__(self, routes: dict[tuple[str, str], Answer], pages: list[Answer]) -> None:
        super().__init__(routes)
        self._pages = pages
        self.served = 0

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        if key == ("GET", "/v2/_catalog"):
            page = self._pages[min(self.served, len(self._pages) - 1)]
            self.served += 1
            return page
        return super().get(key, default)


@pytest.fixture
def looping_upstream() -> Iterator[HostileRegistry]:
    server = HostileRegistry()
    yield server
    server.close()


def test_a_catalog_whose_pages_loop_ends_the_walk_with_a_failure(
    looping_upstream: HostileRegistry, persistent_redis: RedisServer, tmp_path: Path
) -> None:
    """Each page says there is a next one; the pages lead from the start to after "x/a",
    to after "x/b", to after "x/a" again."""
    for repo in ("x/a", "x/b"):
        looping_upstream.serve_tags(repo, ["v1"])
        looping_upstream.serve_image(repo, "v1", make_image(("celery-catalog-loop", repo)))

    def page(repo: str) -> Answer:
        answer = json_answer({"repositories": [repo]})
        link = f'</v2/_catalog?last={repo}&n=5>; rel="next"'
        return replace(answer, headers={**answer.headers, "Link": link})

    pages = Pages(looping_upstream._routes, [page("x/a"), page("x/b"), page("x/a"), page("x/b")])
    looping_upstream._routes = pages
    made = Cluster(tmp_path, looping_upstream, persistent_redis.url)
    try:
        made.worker("w1")
        run_id, _ = trigger(made)
        status = wait_finished(made.coord(), run_id)
        assert (status.total, status.done, status.counters["repos_failed"]) == (2, 2, 0)
        [failure] = status.failures
        assert failure.repo == "(catalog)" and "loops" in failure.reason
        assert made.coord().current_walk(REGISTRY) is None
        assert pages.served == 3
    finally:
        made.stop_all()


def test_a_walk_waiting_to_retry_says_why_in_status(cluster: Cluster) -> None:
    """An upstream nobody answers: the walk's task waits to try again (minutes, as the
    policy says). Meanwhile ``status`` shows which try failed, when the next comes and the
    error, in the run's line and in its JSON."""
    cluster.upstream_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cluster.write_config()
    cluster.worker("w1")
    run_id, _ = trigger(cluster)
    coord = cluster.coord()

    def noted() -> bool:
        status = coord.run_status(run_id)
        return status is not None and status.walk_retry is not None

    wait_for("the walk's retry note", noted)
    shown = cluster.cli("status", run_id)
    assert shown.returncode == 0, shown.stderr
    line = shown.stdout.splitlines()[0]
    assert re.search(r"running \(catalog walk try 1 of \d+ failed, next in \d+s: GET ", line), line
    assert "Connection refused" in line, line
    as_json = json.loads(cluster.cli("status", run_id, "--json").stdout)
    assert as_json["walk_retry"].startswith("try 1 of ") and as_json["state"] == "running"
