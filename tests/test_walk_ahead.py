"""Broker back-pressure: a walk stays at most ``walkAhead`` repositories (plus the page it
sends) ahead of the workers, sending itself again later while the queue is that full; the
run still ends with every repository counted once.

Real workers, a private Redis as broker whose ``syncworker.repo`` list is sampled while the
run goes on, and a synthetic upstream; the queue's length is read the way the walk reads it
(a passive declare) on Redis and on RabbitMQ.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from kombu import Connection

from syncworker.celeryapp import create_app
from syncworker.config import load_config
from syncworker.coord import Coordinator
from syncworker.worker.send import queue_length
from syncworker.worker.tasknames import QUEUE_REPO
from tests.support.cluster import queued_repos
from tests.support.mirror import layout_tags
from tests.support.ports import LOOPBACK, wait_until
from tests.support.redis_server import RedisServer
from tests.support.synthetic_registry import SyntheticRegistry
from tests.test_celery_rabbitmq import AMQP_PORT, amqp_vhost

__all__ = ["amqp_vhost"]  # a fixture

ROOT = Path(__file__).resolve().parent.parent
SYNCWORKER = [sys.executable, "-c", "import sys; from syncworker.cli import main; sys.exit(main())"]
REPOS = 200
PAGE_SIZE = 20
WALK_AHEAD = 30  # repositories waiting before the walk holds back its next page
REPOS_PER_TASK = 4  # pages of five messages; the walk counts each waiting one as four
DEADLINE = 600.0


def _config(path: Path, upstream: str, store: Path, redis_url: str, broker_url: str) -> Path:
    registry = {"name": "up", "urls": [upstream]}
    config = {
        "storage": {"rootDirectory": str(store)},
        "extensions": {"sync": {"registries": [registry]}},
        "syncworker": {
            "redis": redis_url,
            "walkAhead": WALK_AHEAD,
            "reposPerTask": REPOS_PER_TASK,
            "celery": {"broker_url": broker_url},
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


class _Sampler(threading.Thread):
    """The repositories the broker's ``syncworker.repo`` list holds, every few
    milliseconds."""

    def __init__(self, broker_url: str) -> None:
        super().__init__(daemon=True)
        self._client = redis.Redis.from_url(broker_url)
        self._done = threading.Event()
        self.samples: list[int] = []

    def run(self) -> None:
        while not self._done.wait(0.005):
            queued = self._client.lrange(QUEUE_REPO, 0, -1)
            self.samples.append(sum(len(queued_repos(raw)) for raw in queued))

    def stop(self) -> list[int]:
        self._done.set()
        self.join()
        return self.samples


@pytest.fixture
def broker() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.mark.slow
def test_the_walk_stays_a_bounded_number_of_repositories_ahead_of_the_workers(
    tmp_path: Path, private_redis: RedisServer, broker: RedisServer
) -> None:
    with SyntheticRegistry(REPOS) as upstream:
        config = _config(
            tmp_path / "c.yaml", upstream.url, tmp_path / "store", private_redis.url, broker.url
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWORKER_")}
        env["SYNCWORKER_CATALOG_PAGE_SIZE"] = str(PAGE_SIZE)
        log = tmp_path / "worker.log"
        with log.open("ab") as sink:
            worker = subprocess.Popen(
                [*SYNCWORKER, "worker", "-c", str(config), "--concurrency", "2"],
                cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        sampler = _Sampler(broker.url)
        try:
            ready = wait_until(
                lambda: " ready." in log.read_text(errors="replace"), timeout=DEADLINE
            )
            assert ready, log.read_text(errors="replace")[-3000:]
            sampler.start()
            done = subprocess.run(
                [*SYNCWORKER, "trigger", "-c", str(config), "--wait", "--timeout", str(DEADLINE)],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=DEADLINE + 60,
            )  # fmt: skip
            samples = sampler.stop()
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
    # The walk looks before each page: the queue holds at most the bound and one page more.
    assert max(samples) <= WALK_AHEAD + PAGE_SIZE, max(samples)
    assert "repositories wait (walkAhead" in log.read_text(errors="replace")  # it held back
    assert len(layout_tags(tmp_path / "store")) == REPOS
    run = Coordinator(redis.Redis.from_url(private_redis.url)).runs(1)[0]
    counts = (run.counters.get("repos_total"), run.counters.get("repos_done"), run.failures)
    assert counts == (REPOS, REPOS, [])


def _queue_lengths(broker_url: str, tmp_path: Path) -> tuple[int, int]:
    """(before, after) publishing 5 messages to ``QUEUE_REPO``, as the walk reads them."""
    path = _config(tmp_path / "q.yaml", "http://127.0.0.1:9", tmp_path, "redis://x", broker_url)
    app = create_app(load_config(str(path)))
    before = queue_length(app, QUEUE_REPO)  # the queue does not exist yet
    # Publisher confirms: RabbitMQ counts a message only once it has routed it, which a
    # publish without them does not wait for.
    with Connection(broker_url, transport_options={"confirm_publish": True}) as connection:
        queue = next(q for q in app.conf.task_queues if q.name == QUEUE_REPO)
        producer = connection.Producer()
        for n in range(5):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=QUEUE_REPO,
                             declare=[queue])  # fmt: skip
    try:
        return before, queue_length(app, QUEUE_REPO)
    finally:
        app.pool.force_close_all()


def test_queue_length_on_a_redis_broker(tmp_path: Path, broker: RedisServer) -> None:
    assert _queue_lengths(broker.url, tmp_path) == (0, 5)


@pytest.mark.slow
def test_queue_length_on_rabbitmq(tmp_path: Path, amqp_vhost: str) -> None:
    url = f"amqp://guest:guest@{LOOPBACK}:{AMQP_PORT}/{amqp_vhost}"
    assert _queue_lengths(url, tmp_path) == (0, 5)
