"""What a pull budget was spent on is never paid for again: a multi-platform index mirrored
through a stub that counts pulls as Docker Hub does (``tests/support/pull_budget.py``) with
one pull a window. Each run spends the window's one pull and is deferred; the next one
goes on from there (the index and the children fetched stay fetched) instead of fetching
the index again and being deferred at the same child for ever. The budget is kept in
Redis, as the workers that resend a deferred repository keep it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from syncworker.coord import Coordinator
from syncworker.coord.redisbudget import CLOCK_SKEW_MS
from syncworker.registry.budget import LocalPullBudget
from syncworker.registry.client import RegistryClient
from syncworker.registry.gates import Gates
from tests.support.corpus import Corpus, seed_many
from tests.support.images import DEFAULT_PLATFORMS
from tests.support.mirror import layout_tags, run_sync, write_sync_config
from tests.support.pull_budget import PullCounter
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

MANIFESTS = 1 + len(DEFAULT_PLATFORMS)  # the index and one image per platform
HOUR = 3600


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RegistryServer, Corpus]]:
    server = RegistryServer()
    try:
        yield server, seed_many(server, repos=1, tags=1, layers=1, index_every=1)
    finally:
        server.stop()


def test_a_walk_cut_short_by_the_budget_goes_on_where_it_stopped(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    server, corpus = upstream
    redis_server = RedisServer()
    try:
        with PullCounter(server.url, limit=1, window=HOUR) as hub:
            config = write_sync_config(
                tmp_path, tmp_path / "store", [{"urls": [hub.url], "name": "hub"}],
                settings={"redis": redis_server.url},
            )  # fmt: skip
            codes = []
            # A run per window; one more than the manifests proves a walk that never ends.
            for _ in range(MANIFESTS + 1):
                run = run_sync(config)
                codes.append(run.code)
                if run.code != 3:
                    break
                hub.refill()
                # A higher count is believed from requests sent a clock skew's margin
                # after it last went down.
                time.sleep(CLOCK_SKEW_MS / 1000 + 0.1)
    finally:
        redis_server.close()
    assert codes == [3] * (MANIFESTS - 1) + [0], run.output[-3000:]
    assert (hub.counted, hub.refused) == (MANIFESTS, 0)
    stored = layout_tags(tmp_path / "store")
    assert stored["scale/repo-000"]["t0"] == corpus.digest("scale/repo-000", "t0")


def test_a_paid_manifest_found_again_is_kept_longer_without_being_sent_again(
    upstream: tuple[RegistryServer, Corpus],
) -> None:
    """Each GET by digest of a kept manifest re-arms its time in Redis; its bytes, written
    there once, are not written again (the server's command counts tell)."""
    server, corpus = upstream
    redis_server = RedisServer()
    digest = str(corpus.digest("scale/repo-000", "t0"))
    try:
        store = redis.Redis.from_url(redis_server.url)
        gates = Gates(budget=LocalPullBudget(), paid=Coordinator(store, "t").paid_manifests("hub"))
        with (
            PullCounter(server.url, limit=100, window=HOUR) as hub,
            RegistryClient([hub.url], gates=gates) as client,
        ):
            first = client.get_manifest("scale/repo-000", digest)
            (key,) = store.keys("t:paid:*")
            store.expire(key, 60)
            for _ in range(3):
                assert client.get_manifest("scale/repo-000", digest) == first
            ttl = store.ttl(key)
            writes = store.info("commandstats")["cmdstat_hset"]["calls"]
            store.close()
    finally:
        redis_server.close()
    assert hub.counted == 1
    assert ttl > 60  # kept from its last use
    assert writes == 1
