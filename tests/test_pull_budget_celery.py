"""Docker Hub's pull budget on Celery workers: a run that needs three windows of a stub's
budget (``tests/support/pull_budget.py``, a 5 s window) finishes by itself. Each
repository the budget defers is sent again for when it refills (a countdown message, not
a worker waiting), ``status`` shows the deferred tags and the refill time meanwhile, the
upstream never answers 429, and each manifest is pulled once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncworker.coord import RunStatus
from tests.support.cluster import trigger, wait_finished, wait_until
from tests.support.corpus import Corpus, seed_many
from tests.support.pull_budget import PullCounter
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.test_rate_e2e import RateCluster

pytestmark = pytest.mark.slow

REPOS, TAGS = 4, 3
MANIFESTS = REPOS * TAGS
LIMIT, WINDOW = 5, 5


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RegistryServer, Corpus]]:
    server = RegistryServer()
    try:
        yield server, seed_many(server, repos=REPOS, tags=TAGS, layers=1, shared_layers=1)
    finally:
        server.stop()


def test_a_deferred_run_finishes_by_itself_when_the_budget_refills(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    server, _ = upstream
    redis_server = RedisServer()
    hub = PullCounter(server.url, limit=LIMIT, window=WINDOW)
    cluster = RateCluster(tmp_path, server, redis_server.url, upstream_url=hub.url)
    try:
        for index in range(2):
            cluster.worker(f"w{index}")
        run_id, _ = trigger(cluster)
        coord = cluster.coord()
        held = wait_until(lambda: _deferred(coord.run_status(run_id)), timeout=60, interval=0.1)
        shown = cluster.cli("status", run_id)
        status = wait_finished(coord, run_id)
    finally:
        cluster.stop_all()
        hub.close()
        redis_server.close()
    assert (status.state, status.done, status.failures) == ("finished", REPOS, [])
    assert (hub.counted, hub.refused) == (MANIFESTS, 0)
    # While the budget held it back, status said so, and when it refills.
    assert held, "status never showed deferred tags"
    assert re.search(r"\d+ tags deferred \(pull budget refills \d{4}-", shown.stdout), shown
    assert status.deferred_tags == 0  # every deferral was made up for


def _deferred(status: RunStatus | None) -> bool:
    return status is not None and status.deferred_tags > 0 and status.refill_at is not None
