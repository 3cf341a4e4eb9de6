"""Docker Hub's pull budget on Celery workers: a run of three workers sharing one budget
in Redis, needing three windows of a stub's budget (``tests/support/pull_budget.py``, a
5 s window), finishes by itself. Each repository the budget defers is sent again for when
it refills (a countdown message, not a worker waiting), ``status`` shows the deferred tags
and the refill time meanwhile, the upstream never answers 429 (the stub refuses every
pull past its budget, so no window was ever overspent by the three together), and each
manifest is pulled once. An on-demand request is deferred and then done by itself, even
for an index with more manifests than one window's budget."""

from __future__ import annotations

import re
import secrets
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from syncworker.coord import RunStatus
from tests.support.api_server import ApiServer
from tests.support.cluster import (
    REGISTRY,
    Cluster,
    seeded_upstream,
    trigger,
    wait_finished,
    wait_until,
)
from tests.support.corpus import Corpus
from tests.support.images import make_index
from tests.support.pull_budget import PullCounter
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.slow

REPOS, TAGS = 4, 3
MANIFESTS = REPOS * TAGS
LIMIT, WINDOW = 5, 5
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RegistryServer, Corpus]]:
    yield from seeded_upstream(REPOS, TAGS, layers=2, shared_layers=1)


def test_a_deferred_run_finishes_by_itself_when_the_budget_refills(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    server, _ = upstream
    redis_server = RedisServer()
    hub = PullCounter(server.url, limit=LIMIT, window=WINDOW)
    cluster = Cluster(tmp_path, server, redis_server.url, upstream_url=hub.url)
    try:
        for index in range(3):
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
    # Not one pull past the budget of any window, by the three workers together.
    assert (hub.counted, hub.refused) == (MANIFESTS, 0)
    # While the budget held it back, status said so, and when it refills.
    assert held, "status never showed deferred tags"
    assert re.search(r"\d+ tags deferred \(pull budget refills \d{4}-", shown.stdout), shown
    assert status.deferred_tags == 0  # every deferral was made up for


def _deferred(status: RunStatus | None) -> bool:
    return status is not None and status.deferred_tags > 0 and status.refill_at is not None


def test_an_on_demand_request_refused_by_the_budget_runs_when_it_refills(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    """``POST /v1/sync`` for a tag while the budget is spent: the request reads
    ``deferred`` with the refill time, then ``done`` once the budget refills, by itself."""
    server, _ = upstream
    with _on_demand(server, tmp_path, limit=2) as (hub, sync):
        # Someone else spends the budget first, once everything is up (starting it takes
        # longer than a window on a loaded machine): the window starts now.
        spend = urllib.request.Request(
            f"{hub.url}/v2/scale/repo-000/manifests/t0", headers={"Accept": OCI_MANIFEST}
        )
        for _ in range(2):
            urllib.request.urlopen(spend).close()
        seen = sync({"registry": REGISTRY, "repo": "scale/repo-001", "reference": "t0"}, 60)
    deferred = [s for s in seen if s["state"] == "deferred"]
    assert deferred and deferred[0]["result"]["refill_at"] > time.time() - 60, seen
    assert seen[-1]["state"] == "done" and seen[-1]["result"]["copied"] == 1, seen[-1]
    # The two spent, then the image's one manifest: its tag and the referrers tag-schema
    # tag are asked with free HEADs.
    assert (hub.counted, hub.refused) == (3, 0)


def test_an_on_demand_index_larger_than_a_window_is_done_window_by_window(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    """``POST /v1/sync`` for a two-platform index through one pull a window: each resend
    goes on from what the last one paid for (kept in Redis), instead of paying for the
    index again and stopping at the same child for ever."""
    server, _ = upstream
    index = make_index("budget-ondemand-index")
    push_image(server.url, "scale/index", "multi", index)
    with _on_demand(server, tmp_path, limit=1) as (hub, sync):
        seen = sync({"registry": REGISTRY, "repo": "scale/index", "reference": "multi"}, 90)
    assert any(s["state"] == "deferred" for s in seen), seen
    assert seen[-1]["state"] == "done" and seen[-1]["result"]["copied"] == 1, seen[-1]
    assert (hub.counted, hub.refused) == (1 + len(index.children), 0)


# ``POST /v1/sync`` of a body, then its state polled until it ended or the seconds ran out.
Sync = Callable[[dict[str, str], float], list[dict[str, Any]]]


@contextmanager
def _on_demand(
    server: RegistryServer, tmp_path: Path, limit: int
) -> Iterator[tuple[PullCounter, Sync]]:
    """One Celery worker and the API on a private Redis, pulling from ``server`` through a
    stub budget of ``limit`` pulls a window; the stub and a way to ask the API for a sync.
    All stopped after."""
    redis_server = RedisServer()
    hub = PullCounter(server.url, limit=limit, window=WINDOW)
    cluster = Cluster(tmp_path, server, redis_server.url, upstream_url=hub.url)
    token = secrets.token_hex(16)
    api = ApiServer(cluster.config_path, tmp_path / "api.log", token=token, env=cluster.env)
    try:
        cluster.worker("w0")
        yield hub, lambda body, timeout: _until_ended(api, token, body, timeout)
    finally:
        api.stop()
        cluster.stop_all()
        hub.close()
        redis_server.close()


def _until_ended(
    api: ApiServer, token: str, body: dict[str, str], timeout: float
) -> list[dict[str, Any]]:
    """``POST /v1/sync`` of ``body``, then its state polled until done or failed."""
    accepted = api.request("POST", "/v1/sync", token, json=body, timeout=30)
    assert accepted.status_code == 202, accepted.text
    path = f"/v1/sync/{accepted.json()['task_id']}"
    seen: list[dict[str, Any]] = []

    def ended() -> bool:
        seen.append(api.request("GET", path, token, timeout=30).json())
        return bool(seen[-1]["state"] in ("done", "failed"))

    assert wait_until(ended, timeout=timeout, interval=0.2), seen[-1]
    return seen
