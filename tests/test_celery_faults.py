"""Celery tasks meeting what should not happen: a bug's exception, a worker killed under the
same message again and again, a catalog whose pages loop. Real workers, real Redis; the
harness is test_celery_e2e.py's. Each ends its run with a named failure, never a task that
dies with a foreign exception type or a message that loops."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from syncworker.coord import RunFailure
from syncworker.worker.policy import MAX_DELIVERIES
from tests.support.cluster import (
    REGISTRY,
    REPOS,
    Cluster,
    cluster,
    persistent_redis,
    trigger,
    upstream,
    wait_finished,
)
from tests.support.corpus import Corpus
from tests.support.faults import BUG_ENV, KILL_ENV
from tests.support.hostile import Answer, HostileRegistry, json_answer
from tests.support.images import make_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

__all__ = ["cluster", "persistent_redis", "upstream"]  # fixtures, imported for pytest

pytestmark = pytest.mark.slow

FAULTS = ("-I", "tests.support.faults")
# How Celery reports a task that ended with an exception.
CELERY_TASK_FAILED = re.compile(r"Task syncworker\.\w+\[[^\]]+\] raised unexpected")
# How Celery reports a pool process that died under a task.
POOL_PROCESS_KILLED = re.compile(r"Process '\S+' pid:\d+ exited with 'signal 9 \(SIGKILL\)'")


def run_failing(cluster: Cluster, fault_env: str, repo: str) -> RunFailure:
    """Walk with the worker's fault ``fault_env`` aimed at ``repo``: the run ends, every
    repository counted, ``repo`` its one failure (returned)."""
    cluster.extra_env[fault_env] = repo
    cluster.worker("w1", *FAULTS)
    run_id, _ = trigger(cluster)
    status = wait_finished(cluster.coord(), run_id)
    assert (status.total, status.done, status.counters["repos_failed"]) == (REPOS, REPOS, 1)
    [failure] = status.failures
    assert failure.repo == repo
    return failure


def test_a_bug_in_a_task_is_a_named_failure_of_its_run(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    failure = run_failing(cluster, BUG_ENV, upstream[1].repositories[3])
    assert "unexpected KeyError" in failure.reason
    assert not CELERY_TASK_FAILED.search(cluster.log("w1"))


# On a quiet machine the repository is given up before the sweep has resent it.
@pytest.mark.timing
def test_a_repository_whose_worker_dies_every_time_costs_a_few_kills_per_run(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    """The sweep sends the stuck repository again (new messages) every few seconds while
    its first message waits out the visibility timeout: all of them count as one work,
    so the run pays at most MAX_DELIVERIES dead workers for it, not that many per resend."""
    cluster.sweep_seconds = 1  # a resend between any two kills
    # The last repository: once it alone is left, the run stops moving and is swept.
    failure = run_failing(cluster, KILL_ENV, upstream[1].repositories[-1])
    started = re.search(r"started (\d+) times without finishing", failure.reason)
    assert started is not None and int(started.group(1)) > MAX_DELIVERIES, failure.reason
    log = cluster.log("w1")
    assert "sending again" in log  # the sweep did resend it, as a new message
    assert 0 < len(POOL_PROCESS_KILLED.findall(log)) <= MAX_DELIVERIES


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
