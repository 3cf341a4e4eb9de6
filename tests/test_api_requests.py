"""How a request to ``POST /v1/sync`` ended, read back through the API: a real ``syncworker
api`` process, a real worker, a private Redis and a real registry.

A request is ``queued`` until a worker takes it, then ``done`` or ``failed`` with the cause
(a repository that does not exist upstream is visible to the caller, not only in a
worker's log); ``wait`` holds the answer until then, bounded.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from syncworker.coord.keys import REQUEST_TTL, Keys
from tests.support.api_server import ApiServer
from tests.support.cluster import REGISTRY, Cluster
from tests.support.images import make_image
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.slow

WAIT = 50  # the worker starts and copies well within it; the answer comes when it ends


@dataclass
class Setup:
    cluster: Cluster
    upstream: RegistryServer
    api: ApiServer
    token: str
    image_digest: str

    def post(self, **body: Any) -> dict[str, Any]:
        body = {"registry": REGISTRY, **body}
        answer = self.api.request("POST", "/v1/sync", self.token, json=body, timeout=WAIT + 30)
        assert answer.status_code == 202, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def get(self, task_id: str, wait: float = 0) -> tuple[int, dict[str, Any]]:
        path = f"/v1/sync/{task_id}?wait={wait}"
        answer = self.api.request("GET", path, self.token, timeout=WAIT + 30)
        return answer.status_code, answer.json()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """Redis, a registry holding team/app:v1, the API; no worker yet."""
    redis_server = RedisServer()
    upstream = RegistryServer()
    digest = push_image(upstream.url, "team/app", "v1", make_image(seed="requests")).digest
    cluster = Cluster(tmp_path, upstream, redis_server.url)
    token = secrets.token_hex(16)
    api = ApiServer(cluster.config_path, tmp_path / "api.log", token=token, env=cluster.env)
    try:
        yield Setup(cluster, upstream, api, token, digest)
    finally:
        api.stop()
        cluster.stop_all()
        upstream.stop()
        redis_server.close()


def test_a_request_is_queued_then_done_and_its_key_expires(setup: Setup) -> None:
    accepted = setup.post(repo="team/app", reference="v1")
    task_id = accepted["task_id"]
    code, status = setup.get(task_id)
    assert code == 200 and status["state"] == "queued" and status["result"] is None
    assert (status["kind"], status["repo"], status["reference"]) == ("image", "team/app", "v1")
    key = Keys().request(task_id)
    ttl = redis.Redis.from_url(setup.cluster.redis_url).pttl(key)
    assert 0 < ttl <= REQUEST_TTL * 1000

    setup.cluster.worker("w1")
    code, status = setup.get(task_id, wait=WAIT)
    assert code == 200 and status["state"] == "done", status
    assert status["started"] is not None and status["finished"] >= status["started"]
    assert status["result"]["copied"] == 1 and status["result"]["failures"] == []
    index = (setup.cluster.store / "team/app" / "index.json").read_text()
    assert setup.image_digest in index


def test_missing_image_and_repository_fail_with_their_cause(setup: Setup) -> None:
    setup.cluster.worker("w1")
    image = setup.post(repo="team/nothere", reference="v1", wait=WAIT)
    assert image["status"]["state"] == "failed", image
    [cause] = image["status"]["result"]["failures"]
    assert "team/nothere" in cause and "404" in cause

    repo = setup.post(repo="team/nothere", wait=WAIT)
    assert repo["status"]["state"] == "failed" and repo["status"]["kind"] == "repo", repo
    [cause] = repo["status"]["result"]["failures"]
    assert "team/nothere" in cause and "NAME_UNKNOWN" in cause
    code, again = setup.get(repo["task_id"])
    assert code == 200 and {k: v for k, v in again.items() if v is not None} == repo["status"]

    found = setup.post(repo="team/app", wait=WAIT)
    assert found["status"]["state"] == "done" and found["status"]["result"]["copied"] == 1


def test_unknown_ids_and_unbounded_waits_are_refused(setup: Setup) -> None:
    code, answer = setup.get("0123-not-sent")
    assert code == 404 and "unknown or expired" in answer["detail"]
    assert setup.get("bad%20id")[0] == 400
    refused = setup.api.request("GET", "/v1/sync/x?wait=3600", setup.token)
    assert refused.status_code == 400 and "wait" in refused.json()["detail"]
    walk_and_wait = {"registry": REGISTRY, "wait": 5}
    walk = setup.api.request("POST", "/v1/sync", setup.token, json=walk_and_wait)
    assert walk.status_code == 400 and "/v1/runs" in walk.json()["detail"]
    # A wait that runs out answers the request as it stands (no worker: still queued).
    queued = setup.post(repo="team/app", reference="v1", wait=0.5)
    assert queued["status"]["state"] == "queued"
