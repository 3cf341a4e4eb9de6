"""The coordination cost of a run on real Celery workers: a synthetic catalog of many one-tag
repositories, and two private redis-servers, one for the coordination and one as broker,
whose ``INFO commandstats`` count every command (those run inside Lua scripts too); and the
keys left once runs end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from tests.support.mirror import layout_tags
from tests.support.ports import wait_until
from tests.support.redis_server import RedisServer
from tests.support.synthetic_registry import SyntheticRegistry

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SYNCWORKER = [sys.executable, "-c", "import sys; from syncworker.cli import main; sys.exit(main())"]
REPOS = 150
PAGE_SIZE = 40  # four catalog pages
DEADLINE = 300.0
# Coordination commands per repository of a no-op run: the walk's marks, the repository
# lock, the count (one script touching the counters that change); and 4 for counting every
# start of a run's repository, so a poison repository costs MAX_DELIVERIES kills per run
# whatever messages carry it (INCRBY and EXPIRE as it starts, a script's GETDEL as it ends).
MAX_NOOP_COMMANDS_PER_REPO = 12 + 4
# The broker's per message: kombu's Redis transport lists the message (LPUSH), takes it
# (BRPOP), notes it unacknowledged and acknowledges it (two MULTI/EXEC of two commands).
MAX_BROKER_COMMANDS_PER_REPO = 11
# The broker's per run, whatever its size: the walk's pages and its sweep (a message each),
# and the trigger's one ping of the workers (a PUBLISH to their control exchange, its
# reply): about ten messages' worth.
BROKER_COMMANDS_PER_RUN = 100
# What a finished run keeps: its hash, counters and (empty) failures, whatever its size.
MAX_FINISHED_RUN_BYTES = 1024


# Per run, not per repository: reading the run's status (`trigger --wait` polls it, the sweep
# looks at it), connections saying hello, our own INFO.
PER_RUN = ("hgetall", "lrange", "hello", "ping", "client|setinfo", "script|load", "info")


def _commands(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()})


def _per_repo(calls: Counter[str], per_run: int = 0) -> float:
    return (sum(n for name, n in calls.items() if name not in PER_RUN) - per_run) / REPOS


class _Cluster:
    def __init__(
        self, workdir: Path, upstream: SyntheticRegistry, redis_url: str, broker_url: str
    ) -> None:
        self.workdir, self.store = workdir, workdir / "store"
        self.config = workdir / "syncworker.yaml"
        registry = {"name": "up", "urls": [upstream.url], "tlsVerify": False}
        config = {
            "storage": {"rootDirectory": str(self.store)},
            "extensions": {"sync": {"registries": [registry]}},
            "syncworker": {"redis": redis_url, "celery": {"broker_url": broker_url}},
        }
        self.config.write_text(yaml.safe_dump(config))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWORKER_")}
        self.env["SYNCWORKER_CATALOG_PAGE_SIZE"] = str(PAGE_SIZE)
        self.procs: list[subprocess.Popen[bytes]] = []

    def worker(self) -> None:
        """A worker as a user starts it: no option but the pool's size."""
        log = self.workdir / "worker.log"
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                [*SYNCWORKER, "worker", "-c", str(self.config), "--concurrency", "2"],
                cwd=ROOT, env=self.env, stdout=sink, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        ready = wait_until(
            lambda: " ready." in log.read_text(errors="replace"),
            timeout=DEADLINE,
            alive=lambda: proc.poll() is None,
        )
        assert ready, log.read_text(errors="replace")[-3000:]

    def trigger(self) -> None:
        done = subprocess.run(
            [*SYNCWORKER, "trigger", "-c", str(self.config), "--wait", "--timeout", str(DEADLINE)],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=DEADLINE + 60,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


@pytest.fixture
def broker() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def cluster(tmp_path: Path, private_redis: RedisServer, broker: RedisServer) -> Iterator[_Cluster]:
    with SyntheticRegistry(REPOS) as upstream:
        made = _Cluster(tmp_path, upstream, private_redis.url, broker.url)
        try:
            yield made
        finally:
            made.stop()


def _run_keys(client: redis.Redis) -> list[str]:
    return sorted(key.decode() for key in client.scan_iter("syncworker:run:*"))


def test_a_noop_run_costs_few_commands_per_repository_and_leaves_no_marks(
    cluster: _Cluster, private_redis: RedisServer, broker: RedisServer
) -> None:
    client, broker_client = (
        redis.Redis.from_url(private_redis.url),
        redis.Redis.from_url(broker.url),
    )
    cluster.worker()
    cluster.trigger()
    assert len(layout_tags(cluster.store)) == REPOS

    wait_until(lambda: broker_client.llen("syncworker.repo") == 0, timeout=DEADLINE)
    for each in (client, broker_client):
        each.config_resetstat()
    cluster.trigger()
    calls, broker_calls = _commands(client), _commands(broker_client)
    assert _per_repo(calls) <= MAX_NOOP_COMMANDS_PER_REPO, calls.most_common()
    broker_per_repo = _per_repo(broker_calls, BROKER_COMMANDS_PER_RUN)
    assert broker_per_repo <= MAX_BROKER_COMMANDS_PER_REPO, broker_calls.most_common()
    assert calls["hincrby"] <= 2 * REPOS + 10  # repos_done, images_skipped: nothing else

    assert not list(client.scan_iter("celery-task-meta-*"))  # nobody waits on a result
    keys = _run_keys(client)
    assert keys and not [key for key in keys if key.endswith((":repos", ":cursors"))]
    held = sum(int(client.memory_usage(key, samples=0) or 0) for key in keys)
    assert held <= 2 * MAX_FINISHED_RUN_BYTES, keys
