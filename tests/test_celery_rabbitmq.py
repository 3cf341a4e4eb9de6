"""RabbitMQ as the broker, chosen by URL: the same walk, with
`broker_url: amqp://...` in `syncworker.celery` and Redis kept for coordination.

Each test gets its own RabbitMQ virtual host (created and deleted with rabbitmqctl), so its
queues cannot meet another test's. RabbitMQ is started if it is installed but not running.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.cluster import (
    REPOS,
    TAGS,
    Cluster,
    assert_store_matches,
    persistent_redis,
    sync_repo_runs,
    upstream,
)
from tests.support.corpus import Corpus
from tests.support.ports import LOOPBACK, wait_until
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

__all__ = ["persistent_redis", "upstream"]  # fixtures shared with test_celery_e2e

pytestmark = pytest.mark.slow

AMQP_PORT = 5672


def amqp_open() -> bool:
    try:
        with socket.create_connection((LOOPBACK, AMQP_PORT), timeout=1):
            return True
    except OSError:
        return False


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture
def amqp_vhost() -> Iterator[str]:
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    if not amqp_open():
        subprocess.run(["rabbitmq-server", "-detached"], check=False, timeout=60)
        assert wait_until(amqp_open, timeout=90), "rabbitmq-server did not start"
    vhost = f"syncworker-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost
    finally:
        rabbitmqctl("delete_vhost", vhost)


def test_walk_over_rabbitmq(
    tmp_path: Path,
    upstream: tuple[RegistryServer, Corpus],
    persistent_redis: RedisServer,
    amqp_vhost: str,
) -> None:
    server, corpus = upstream
    cluster = Cluster(tmp_path, server, persistent_redis.url)
    config = yaml.safe_load(cluster.config_path.read_text())
    config["syncworker"]["celery"] = {
        "broker_url": f"amqp://guest:guest@{LOOPBACK}:{AMQP_PORT}/{amqp_vhost}"
    }
    cluster.config_path.write_text(yaml.safe_dump(config))
    try:
        cluster.worker("w1")
        cluster.worker("w2")
        assert "amqp://" in cluster.log("w1")  # the broker really is RabbitMQ
        done = cluster.cli("trigger", "--wait")
        assert done.returncode == 0, done.stderr
        run_id = done.stdout.strip()
        status = cluster.coord().run_status(run_id)
        assert status is not None and status.state == "finished"
        assert (status.total, status.done, status.failures) == (REPOS, REPOS, [])
        assert status.counters["images_copied"] == REPOS * TAGS
        runs = sync_repo_runs(cluster, ["w1", "w2"], corpus.repositories)
        assert runs == {r: 1 for r in corpus.repositories}
        assert_store_matches(cluster.store, corpus)
    finally:
        cluster.stop_all()
