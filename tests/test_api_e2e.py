"""`syncworker api` end to end: a real distribution registry whose `notifications` endpoint is
the API, real `syncworker worker` processes, a private Redis, the store read back with skopeo.

Nothing triggers a sync here but the registry's own notifications. Waits poll with a
deadline and never assert on elapsed time (bench/api.py measures the latency).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.api_server import ApiServer
from tests.support.cluster import Cluster, queued_args, wait_for
from tests.support.images import Manifest, make_image
from tests.support.ports import free_port
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.slow

ENDPOINT = "syncworker"
QUEUE = "syncworker.ondemand"
# The entry mirrors team/** and, of those, only tags starting with v.
CONTENT = [{"prefix": "team/**", "tags": {"regex": "^v"}}]


def notification_endpoint(api_port: int, token: str) -> dict[str, Any]:
    """distribution's `notifications.endpoints` entry for the API: the token in its
    headers, a short backoff so that refused deliveries are retried within the test."""
    return {
        "name": ENDPOINT,
        "url": f"http://127.0.0.1:{api_port}/v1/webhooks/distribution",
        "headers": {"Authorization": [f"Bearer {token}"]},
        "timeout": "5s",
        "threshold": 1,
        "backoff": "200ms",
    }


@dataclass
class Setup:
    cluster: Cluster
    upstream: RegistryServer
    api: ApiServer
    token: str

    def queue(self) -> list[list[Any]]:
        raw = redis.Redis.from_url(self.cluster.redis_url).lrange(QUEUE, 0, -1)
        return [queued_args(item) for item in raw]

    def notifications(self) -> dict[str, Any]:
        return self.upstream.notification_metrics(ENDPOINT)

    def delivered(self) -> bool:
        """The registry has no notification left to send."""
        return int(self.notifications()["Pending"]) == 0

    def stored_digest(self, repo: str, tag: str) -> str | None:
        index = self.cluster.store / repo / "index.json"
        if not index.is_file():
            return None
        for entry in json.loads(index.read_text())["manifests"]:
            if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                digest: str = entry["digest"]
                return digest
        return None

    def sync_images_run(self) -> int:
        """sync_image tasks the worker finished (its policy logs one line each)."""
        return self.cluster.log("w1").count("syncworker.sync_image(")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Setup]]:
    """start(registry_token=..., worker=True): Redis, a registry notifying an API that
    expects a fresh token (the registry sends ``registry_token``, default the right one)."""
    stops: list[Callable[[], None]] = []

    def make(registry_token: str | None = None, worker: bool = True) -> Setup:
        token = secrets.token_hex(16)
        redis_server = RedisServer()
        stops.append(redis_server.close)
        api_port = free_port()
        endpoint = notification_endpoint(api_port, registry_token or token)
        upstream = RegistryServer(notifications=[endpoint])
        stops.append(upstream.stop)
        cluster = Cluster(tmp_path, upstream, redis_server.url)
        cluster.write_config(content=CONTENT)
        stops.append(cluster.stop_all)
        api = ApiServer(cluster.config_path, tmp_path / "api.log", token=token, port=api_port,
                        env=cluster.env)  # fmt: skip
        stops.append(api.stop)
        if worker:
            cluster.worker("w1")
        return Setup(cluster, upstream, api, token)

    yield make
    for stop in reversed(stops):
        stop()


def skopeo_digest(store: Path, repo: str, tag: str) -> str:
    out = subprocess.run(["skopeo", "inspect", f"oci:{store / repo}:{tag}"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    digest: str = json.loads(out.stdout)["Digest"]
    return digest


def push(setup: Setup, repo: str, tag: str, image: Manifest) -> str:
    return push_image(setup.upstream.url, repo, tag, image).digest


def test_push_is_mirrored_by_its_notification_alone(start: Callable[..., Setup]) -> None:
    setup = start()
    # Pushed first, so their notifications are answered before the last one's (the
    # registry delivers in order): one no content rule takes, one whose tag is excluded.
    push(setup, "other/app", "v1", make_image(seed="other"))
    push(setup, "team/app", "dev", make_image(seed="dev"))
    first = push(setup, "team/app", "v1", make_image(seed="v1"))
    wait_for("team/app:v1 in the store", lambda: setup.stored_digest("team/app", "v1") == first)
    assert skopeo_digest(setup.cluster.store, "team/app", "v1") == first

    wait_for("every notification delivered", setup.delivered)
    metrics = setup.notifications()
    assert (metrics["Failures"], metrics["Errors"]) == (0, 0)
    assert set(metrics["Statuses"]) == {"202 Accepted"}  # blobs and pulls too, ignored
    assert not (setup.cluster.store / "other").exists()
    assert setup.stored_digest("team/app", "dev") is None
    wait_for("the sync_image logged", lambda: setup.sync_images_run() >= 1)
    assert setup.sync_images_run() == 1
    assert setup.cluster.coord().runs() == []  # no walk: the notification did it all

    # The same content pushed again: its notification is coalesced with the first task.
    events = metrics["Events"]
    push(setup, "team/app", "v1", make_image(seed="v1"))
    wait_for("the re-push notified", lambda: setup.notifications()["Events"] > events)
    wait_for("every notification delivered", setup.delivered)
    assert "coalesced with task" in setup.api.output()
    assert setup.queue() == [] and setup.sync_images_run() == 1

    # New content under the same tag is a new sync, never folded into the first one.
    second = push(setup, "team/app", "v1", make_image(seed="v1-new"))
    wait_for("the new v1 in the store", lambda: setup.stored_digest("team/app", "v1") == second)
    assert skopeo_digest(setup.cluster.store, "team/app", "v1") == second
    wait_for("the second sync_image logged", lambda: setup.sync_images_run() >= 2)
    assert setup.sync_images_run() == 2
    assert setup.token not in setup.api.output() + setup.cluster.log("w1")


def test_wrong_token_enqueues_nothing_and_every_retry_is_refused(
    start: Callable[..., Setup],
) -> None:
    setup = start(registry_token="not-the-token-" + secrets.token_hex(8), worker=False)
    push(setup, "team/app", "v1", make_image(seed="refused"))
    wait_for("the registry to retry", lambda: setup.notifications()["Failures"] >= 5)
    metrics = setup.notifications()
    assert set(metrics["Statuses"]) == {"401 Unauthorized"} and metrics["Successes"] == 0
    refused = setup.api.output().count("refused POST '/v1/webhooks/distribution'")
    assert refused >= 5
    # Nothing reached the broker or Redis: no queue, no coalescing key, no run.
    client = redis.Redis.from_url(setup.cluster.redis_url)
    assert client.keys("*") == []
    assert not setup.cluster.store.exists() or not any(setup.cluster.store.iterdir())
    assert "sync_image" not in setup.api.output()
