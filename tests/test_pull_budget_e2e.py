"""Docker Hub's pull budget, end to end: ``syncworker sync`` against a stub that counts
pulls as Docker Hub does (``tests/support/pull_budget.py``) in front of a real registry.
A run spends the budget and defers the rest (exit 3, naming the registry, the count and
the refill time), never getting a 429; a run while it is spent GETs nothing; once it
refills the deferred tags are fetched, each manifest once in all; a no-op run spends
nothing. In one process, and with the budget kept in Redis."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from syncworker.coord.redisbudget import CLOCK_SKEW_MS
from tests.support.cluster import seeded_upstream
from tests.support.corpus import Corpus
from tests.support.mirror import SyncRun, run_sync, write_sync_config
from tests.support.pull_budget import PullCounter
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

REPOS, TAGS = 4, 3
MANIFESTS = REPOS * TAGS  # distinct single-platform images (a layer of their own each)
LIMIT = 7
HOUR = 3600


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RegistryServer, Corpus]]:
    yield from seeded_upstream(REPOS, TAGS, layers=2, shared_layers=1)


@pytest.fixture(params=["local", "redis"])
def settings(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if request.param == "local":
        yield {"concurrency": 4}
        return
    server = RedisServer()
    try:
        yield {"concurrency": 4, "redis": server.url}
    finally:
        server.close()


def _sync(
    tmp_path: Path,
    hub: PullCounter,
    settings: dict[str, Any],
    flags: Sequence[str] = (),
    **more: Any,
) -> SyncRun:
    config = write_sync_config(
        tmp_path, tmp_path / "store", [{"urls": [hub.url], "name": "hub", **more}],
        settings=settings,
    )  # fmt: skip
    return run_sync(config, *flags)


def _deferred_line(run: SyncRun) -> str:
    lines = [line for line in run.output.splitlines() if "DEFERRED" in line]
    assert len(lines) == 1, run.output[-3000:]
    return lines[0]


def test_the_budget_is_spent_never_overspent(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path, settings: dict[str, Any]
) -> None:
    server, _ = upstream
    with PullCounter(server.url, limit=LIMIT, window=HOUR) as hub:
        first = _sync(tmp_path, hub, settings)
        assert first.code == 3, first.output[-3000:]
        line = _deferred_line(first)
        assert re.search(rf"hub: {MANIFESTS - LIMIT} tags, .* refills at \d{{4}}-", line), line
        assert (hub.counted, hub.refused) == (LIMIT, 0)
        # Each repository's line counts the tags it left for later.
        per_repo = re.findall(r"^\[ *\d+\] hub/.*unchanged, (\d+) deferred, ", first.stderr, re.M)
        assert sum(map(int, per_repo)) == MANIFESTS - LIMIT, first.stderr[-3000:]

        spent = _sync(tmp_path, hub, settings)
        assert spent.code == 3, spent.output[-3000:]
        assert (hub.counted, hub.refused) == (LIMIT, 0)

        hub.refill()
        # A count that went up is believed from requests sent a clock skew's margin after
        # it last went down (the first run's last pulls may be that recent).
        time.sleep(CLOCK_SKEW_MS / 1000 + 0.1)
        rest = _sync(tmp_path, hub, settings)
        assert rest.code == 0, rest.output[-3000:]
        # Every manifest fetched once in all: what the first run fetched stayed fetched.
        assert (hub.counted, hub.refused) == (MANIFESTS, 0)

        heads = hub.heads
        noop = _sync(tmp_path, hub, settings)
        assert noop.code == 0, noop.output[-3000:]
        assert (hub.counted, hub.refused) == (MANIFESTS, 0)
        assert hub.heads >= heads + MANIFESTS  # the no-op run checked every tag, for free


def test_the_reserve_is_left_unspent(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    server, _ = upstream
    metrics = tmp_path / "metrics.prom"
    with PullCounter(server.url, limit=LIMIT, window=HOUR) as hub:
        run = _sync(
            tmp_path, hub, {"concurrency": 4}, ["--metrics-file", str(metrics)],
            pullBudgetReserve=3,
        )  # fmt: skip
        assert run.code == 3, run.output[-3000:]
        assert (hub.counted, hub.refused) == (LIMIT - 3, 0)
        assert f"hub: {MANIFESTS - LIMIT + 3} tags" in _deferred_line(run)
    # The gauge holds what the last answer declared: the reserve, left unspent.
    assert 'syncworker_upstream_pull_budget_remaining{registry="hub"} 3.0' in metrics.read_text()
