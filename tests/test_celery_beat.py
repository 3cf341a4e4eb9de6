"""Beat with real time, real `syncworker beat` processes and a private real Redis: schedules
whose period is longer than RedBeat's lock timeout and than beat's longest sleep, Redis
restarted under a running beat, and two beats sharing one schedule.

The lock timeout is shortened through the config (`redbeat_lock_timeout`), exactly as a user
would set it; beat's longest sleep is left to beat. Fire times are read from the beats' own
"Sending due task" lines and checked against what reached the walk queue. Every wait polls
with a deadline and never asserts on elapsed time: a fire is never early (the next due time
is counted from the previous fire), so two fires closer than one period are one due time
sent twice.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
import yaml
from redbeat.decoder import RedBeatJSONDecoder

from syncworker.worker.schedule import entry_name
from syncworker.worker.settings import REDBEAT_PREFIX
from syncworker.worker.tasknames import QUEUE_WALK, TASK_WALK
from tests.support.cluster import (
    DEADLINE,
    REGISTRY,
    Cluster,
    NoUpstream,
    queued_args,
    queued_task,
    wait_for,
)
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.slow

LOCK_TIMEOUT = 2  # seconds (60 by default)
INTERVAL = 6  # a period longer than the lock timeout: each due time is a wake-up past it
# Fires of one entry are at least a period apart, less the log line's own delay.
TOLERANCE = 1.0
_FIRED = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/MainProcess\] "
    rf"Scheduler: Sending due task syncworker\.walk:{REGISTRY} ",
    re.MULTILINE,
)


def beat_cluster(tmp_path: Path, redis_url: str, **registry: str) -> Cluster:
    """A cluster config with the lock timeout shortened and beat's sleep its own default."""
    cluster = Cluster(tmp_path, NoUpstream(), redis_url)
    cluster.write_config(**registry)
    config = yaml.safe_load(cluster.config_path.read_text())
    celery = config["syncworker"]["celery"]
    celery["redbeat_lock_timeout"] = LOCK_TIMEOUT
    del celery["beat_max_loop_interval"]
    cluster.config_path.write_text(yaml.safe_dump(config))
    return cluster


@pytest.fixture
def cluster(tmp_path: Path, private_redis: RedisServer) -> Iterator[Cluster]:
    """Beats whose schedule sends the registry's walk every INTERVAL seconds."""
    made = beat_cluster(tmp_path, private_redis.url, pollInterval=f"{INTERVAL}s")
    yield made
    made.stop_all()


def fires(cluster: Cluster, *beats: str) -> list[datetime]:
    """When each beat logged sending the registry's walk, all beats together, in order."""
    found = [m for name in beats for m in _FIRED.findall(cluster.log(name))]
    return sorted(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp in found)


def wait_fires(cluster: Cluster, count: int, *beats: str, timeout: float = DEADLINE) -> None:
    def enough() -> bool:
        dead = [name for name in beats if cluster.procs[name].poll() is not None]
        assert not dead, f"beat {dead} exited:\n{cluster.log(dead[0])[-3000:]}"
        return len(fires(cluster, *beats)) >= count

    wait_for(f"{count} walks fired", enough, timeout=timeout)


def take_over(cluster: Cluster) -> None:
    """beat1 fires, beat2 starts; then beat1 frozen past its lock (a long pause, a network
    partition) until beat2 has taken over and fired."""
    cluster.beat("beat1")
    wait_fires(cluster, 1, "beat1")
    cluster.beat("beat2")
    wait_for("beat2 to start", lambda: "beat: Starting..." in cluster.log("beat2"))
    cluster.kill("beat1", signal.SIGSTOP)
    try:
        wait_fires(cluster, 1, "beat2")
    finally:
        cluster.kill("beat1", signal.SIGCONT)


def assert_once_per_period(times: list[datetime], period: float) -> None:
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert all(gap >= period - TOLERANCE for gap in gaps), f"a due time fired twice: {gaps}"


def walks_queued(redis_url: str) -> int:
    """The walk messages in the queue, each checked to be the registry's walk."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.lrange(QUEUE_WALK, 0, -1)
    finally:
        client.close()
    assert all(queued_task(m) == TASK_WALK and queued_args(m) == [REGISTRY] for m in raw)
    return len(raw)


def assert_each_fire_queued(cluster: Cluster, redis_url: str, *beats: str, lost: int = 0) -> None:
    """Each fire the beats logged has its one walk message in the queue, less ``lost`` (those
    a Redis that came back empty wiped). Beat logs a fire just before it sends the message, so
    the two are read until they agree, the queue first: then it can never hold more than the
    fires read after it, and one message more fails at once; one never sent never agrees."""

    def agree() -> bool:
        queued = walks_queued(redis_url)
        fired = len(fires(cluster, *beats)) - lost
        assert queued <= fired, f"{queued} walk messages queued for {fired} fires: one sent twice"
        return queued == fired

    wait_for("each fire's walk message queued once", agree, timeout=10)


def stored_last_run(redis_url: str) -> datetime:
    """The last run of the registry's entry as beat stored it, once it is stored, in local
    time like the log lines."""
    client = redis.Redis.from_url(redis_url)
    key = f"{REDBEAT_PREFIX}{entry_name(REGISTRY)}"
    try:
        wait_for("the schedule written", lambda: client.hget(key, "meta") is not None)
        meta = json.loads(client.hget(key, "meta"), cls=RedBeatJSONDecoder)
    finally:
        client.close()
    last_run: datetime = meta["last_run_at"].astimezone().replace(tzinfo=None)
    return last_run


def test_a_beat_with_nothing_to_fire_says_so(tmp_path: Path, private_redis: RedisServer) -> None:
    cluster = beat_cluster(tmp_path, private_redis.url)  # no pollInterval, no schedule
    try:
        cluster.beat("beat")
        wait_for("the warning", lambda: "this beat fires nothing" in cluster.log("beat"))
    finally:
        cluster.stop_all()


def test_interval_longer_than_the_lock_keeps_firing(
    cluster: Cluster, private_redis: RedisServer
) -> None:
    cluster.beat("beat")
    wait_fires(cluster, 3, "beat")
    assert_once_per_period(fires(cluster, "beat"), INTERVAL)
    assert_each_fire_queued(cluster, private_redis.url, "beat")
    assert "WARNING" not in cluster.log("beat")  # nor RedBeat's deprecation warnings


def test_cron_period_longer_than_the_lock_fires(tmp_path: Path, private_redis: RedisServer) -> None:
    # A new entry first fires at its next due time, a minute boundary: starting 10 s or more
    # before one, beat reaches it across five lock timeouts and more.
    if datetime.now().second >= 50:
        time.sleep(61 - datetime.now().second)
    cluster = beat_cluster(tmp_path, private_redis.url, schedule="* * * * *")
    try:
        cluster.beat("beat")
        wait_fires(cluster, 1, "beat")
        assert_each_fire_queued(cluster, private_redis.url, "beat")
        assert len(fires(cluster, "beat")) == 1
        assert cluster.procs["beat"].poll() is None
    finally:
        cluster.stop_all()


def test_redis_restarted_under_beat_keeps_firing_without_refiring(
    cluster: Cluster, private_redis: RedisServer
) -> None:
    cluster.beat("beat")
    wait_fires(cluster, 2, "beat")
    # Down for longer than the lock, and back empty (no persistence): lock, schedule
    # and the entry's last run are gone.
    private_redis.stop()
    time.sleep(LOCK_TIMEOUT + 1)
    private_redis.start()
    # Written back with the last run beat sent, not as a new entry (whose first run would
    # be a whole period after the restart: a nightly walk due meanwhile would be skipped).
    last_run = stored_last_run(private_redis.url)
    logged = fires(cluster, "beat")  # to the millisecond
    assert any(abs(fired - last_run) < timedelta(seconds=1) for fired in logged), logged
    wait_fires(cluster, 4, "beat")
    assert_once_per_period(fires(cluster, "beat"), INTERVAL)
    assert_each_fire_queued(cluster, private_redis.url, "beat", lost=2)


def test_two_beats_fire_each_due_time_once_across_a_takeover(
    cluster: Cluster, private_redis: RedisServer
) -> None:
    take_over(cluster)
    count = len(fires(cluster, "beat1", "beat2"))
    wait_fires(cluster, count + 2, "beat1", "beat2")
    times = fires(cluster, "beat1", "beat2")
    assert_once_per_period(times, INTERVAL)
    assert_each_fire_queued(cluster, private_redis.url, "beat1", "beat2")
    assert "lost the lock" in cluster.log("beat1")


def test_a_beat_that_saw_another_fire_does_not_refire_after_redis_lost_everything(
    cluster: Cluster, private_redis: RedisServer
) -> None:
    take_over(cluster)
    wait_for("beat1 to stand by", lambda: "lost the lock" in cluster.log("beat1"))
    # beat2 frozen, and Redis back empty: beat1 takes the lock and writes the schedule
    # back, knowing nothing newer than its own fire, which beat2's came after.
    cluster.kill("beat2", signal.SIGSTOP)
    try:
        private_redis.stop()
        private_redis.start()
        count = len(fires(cluster, "beat1", "beat2"))
        wait_fires(cluster, count + 1, "beat1", "beat2")
    finally:
        cluster.kill("beat2", signal.SIGCONT)
    assert_once_per_period(fires(cluster, "beat1", "beat2"), INTERVAL)
