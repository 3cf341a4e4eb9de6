"""Two beats for a minute of faults: the holder frozen past its lock (a long pause, a
partition) and Redis restarted, again and again, with a period longer than the lock. Both
beats live through it all, the walk keeps firing, and no due time fires twice. Redis keeps
an append-only file here, as in production, so every fire reaches the queue and stays."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer
from tests.test_celery_beat import (
    INTERVAL,
    LOCK_TIMEOUT,
    assert_each_fire_queued,
    assert_once_per_period,
    beat_cluster,
    fires,
    wait_fires,
)

pytestmark = pytest.mark.chaos

ROUNDS = 8
BEATS = ("beat1", "beat2")


def test_two_beats_through_pauses_and_redis_restarts(tmp_path: Path) -> None:
    rng = random.Random(24)
    with RedisServer(persistent=True) as redis_server:
        cluster = beat_cluster(tmp_path, redis_server.url, pollInterval=f"{INTERVAL}s")
        try:
            for name in BEATS:
                cluster.beat(name)
            wait_fires(cluster, 1, *BEATS)
            for _ in range(ROUNDS):
                if rng.random() < 0.6:
                    frozen = rng.choice(BEATS)
                    cluster.kill(frozen, signal.SIGSTOP)
                    time.sleep(LOCK_TIMEOUT + rng.uniform(0.5, INTERVAL))
                    cluster.kill(frozen, signal.SIGCONT)
                else:
                    redis_server.stop()
                    time.sleep(rng.uniform(0.5, LOCK_TIMEOUT + 1))
                    redis_server.start()
                time.sleep(rng.uniform(0, INTERVAL))
            count = len(fires(cluster, *BEATS))
            wait_fires(cluster, count + 2, *BEATS)  # still firing after the last fault
            times = fires(cluster, *BEATS)
            assert_once_per_period(times, INTERVAL)
            assert_each_fire_queued(cluster, redis_server.url, *BEATS)
        finally:
            cluster.stop_all()
