"""The scale set: many small repositories, where coordination, not copying, sets the pace.

A synthetic registry (``tests/support/synthetic_registry.py``) serves ``SCALE_REPOS``
one-tag repositories of one 4 KiB layer. Measured, embedded (``syncworker sync``) and with
``SCALE_WORKERS`` Celery workers of ``SCALE_PROCESSES`` processes each on a private Redis,
a cold run then a no-op run:

- CPU seconds of the workers' process trees per repository, and upstream requests;
- Redis commands per repository (``INFO commandstats``, which counts the commands Lua
  scripts run as well as the clients' own), of the coordination and of the broker apart:
  each has a Redis of its own here, as with a separate broker (or RabbitMQ) in production;
- the fan-out of a catalog page of 1,000: each page of the walk run in this process alone
  (``runs.catalogwalk.walk_page`` sending as ``walk_catalog`` does), wall and CPU seconds; and, for
  the runs, each ``walk_catalog`` the workers logged (``done in``), slower as it
  shares the box with the repositories being synced;
- bytes the run keys hold once both runs finished (``MEMORY USAGE`` of every
  ``{prefix}:run:*`` key), per repository;
- ``syncworker status`` with ``STATUS_RUNS`` finished runs kept.
"""

from __future__ import annotations

import re
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.metrics import Traffic
from bench.proc import Finished, run_measured
from bench.proxy import DelayProxy
from bench.results import Measurement, Sample
from bench.tools import (
    RUN_TIMEOUT,
    CeleryWorkers,
    check_ok,
    child_env,
    code_root,
    run_sync,
    syncworker_argv,
    write_sync_config,
)
from syncworker.celeryapp import create_app
from syncworker.config import load_config
from syncworker.coord import Coordinator
from syncworker.engine import Mirror
from syncworker.runs.catalogwalk import Step, claim_walk, walk_page
from syncworker.runtime import Runtime
from syncworker.worker.send import CeleryWalkQueue
from tests.support.redis_server import RedisServer
from tests.support.synthetic_registry import SyntheticRegistry

__all__ = [
    "SCALE_PROCESSES",
    "SCALE_QUICK_REPOS",
    "SCALE_REPOS",
    "SCALE_WORKERS",
    "STATUS_RUNS",
    "ScaleFigures",
    "measure_scale",
    "redis_cpu",
    "page_seconds",
    "redis_commands",
    "run_key_bytes",
    "scale_servers",
]

SCALE_REPOS = 5000
SCALE_QUICK_REPOS = 300
SCALE_WORKERS = 2
SCALE_PROCESSES = 2
STATUS_RUNS = 100
LAYER_SIZE = 4096
PREFIX = "syncworker"
REGISTRY = "upstream"  # the registry's name in write_sync_config's config
PAGE = 1000
_WALK_DONE = re.compile(r"syncworker\.walk_catalog\([^)]*\) done in ([0-9.]+)s")


@dataclass(frozen=True)
class ScaleFigures:
    """What one run of the scale set cost, per repository where that is the unit."""

    repos: int
    wall: float
    cpu: float  # CPU seconds of the measured trees
    requests: int  # upstream requests
    commands: int = 0  # coordination Redis commands, Lua scripts' own included
    by_command: dict[str, int] | None = None
    broker_commands: int = 0  # the broker's Redis
    broker_by_command: dict[str, int] | None = None
    walk_pages: list[float] | None = None  # seconds per walk_catalog task
    redis_cpu: float = 0.0  # CPU seconds of the Redis server

    @property
    def cpu_ms_per_repo(self) -> float:
        return 1000 * self.cpu / self.repos

    @property
    def commands_per_repo(self) -> float:
        return self.commands / self.repos

    @property
    def broker_commands_per_repo(self) -> float:
        return self.broker_commands / self.repos

    @property
    def redis_us_per_repo(self) -> float:
        return 1e6 * self.redis_cpu / self.repos


@contextmanager
def scale_servers(
    repos: int, workdir: Path, latency_ms: int = 0
) -> Iterator[tuple[Path, str, str]]:
    """A synthetic registry of ``repos`` scale repositories (behind a proxy adding
    ``latency_ms`` to each request, if any) and a Redis each for the coordination and the
    broker, for as long as the block runs: the config syncing them into ``workdir/store``
    (written as ``workdir/config.yaml``), and both Redis URLs."""
    with (
        SyntheticRegistry(repos, layer_size=LAYER_SIZE) as registry,
        DelayProxy(registry.port, latency_ms / 1000) if latency_ms else nullcontext() as proxy,
        RedisServer() as server,
        RedisServer() as broker,
    ):
        config = write_sync_config(
            workdir / "config.yaml", proxy.url if proxy else registry.url, workdir / "store",
            redis_url=server.url, broker_url=broker.url,
        )  # fmt: skip
        yield config, server.url, broker.url


def redis_commands(client: redis.Redis) -> Counter[str]:
    """Calls per command so far (``INFO commandstats``)."""
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()})


def redis_cpu(client: redis.Redis) -> float:
    """CPU seconds the Redis server used so far (``INFO cpu``, user + system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_key_bytes(client: redis.Redis, prefix: str = PREFIX) -> int:
    """Bytes Redis holds for every run key (``MEMORY USAGE``, key and value)."""
    total = 0
    for key in client.scan_iter(f"{prefix}:run:*", count=1000):
        total += int(client.memory_usage(key, samples=0) or 0)
    return total


def _walk_pages(logdir: Path, seen: int) -> list[float]:
    """Seconds of each walk_catalog task the workers logged, after the first ``seen``."""
    times = [
        float(match[1])
        for log in sorted(logdir.glob("worker-*.log"))
        for match in _WALK_DONE.finditer(log.read_text(errors="replace"))
    ]
    return times[seen:]


def _embedded(repos: int, done: Finished, registry: SyntheticRegistry, before: int) -> ScaleFigures:
    check_ok(done, "syncworker sync")
    return ScaleFigures(repos, done.wall, done.cpu, registry.total_requests() - before)


class ScaleBench:
    """The scale set's measurements, into ``measurements`` (bench/results.py)."""

    def __init__(self, workdir: Path, log: Callable[[str], None], repos: int = SCALE_REPOS):
        self.workdir, self.log, self.repos = workdir, log, repos
        self.measurements: list[Measurement] = []

    def _record(self, key: str, label: str, figures: ScaleFigures, **params: Any) -> None:
        traffic = Traffic(figures.requests, 0, 0)
        sample = Sample(figures.wall, 0, traffic, figures.cpu)
        params.update(
            repos=figures.repos,
            cpu_ms_per_repo=figures.cpu_ms_per_repo,
            commands_per_repo=figures.commands_per_repo,
            by_command=figures.by_command,
            walk_pages=figures.walk_pages,
            redis_us_per_repo=figures.redis_us_per_repo,
            broker_commands_per_repo=figures.broker_commands_per_repo,
            broker_by_command=figures.broker_by_command,
        )
        measurement = Measurement(key, label, self.repos * 2, 0, self.repos, [sample], params)
        self.measurements.append(measurement)
        self.log(
            f"{key}: {figures.wall:.1f}s, {figures.cpu_ms_per_repo:.2f} ms CPU/repo, "
            f"{figures.commands_per_repo:.1f} + {figures.broker_commands_per_repo:.1f} (broker) "
            "Redis commands/repo, "
            f"{figures.redis_us_per_repo:.0f} µs Redis CPU/repo, {figures.requests} requests"
        )

    def embedded(self, registry: SyntheticRegistry) -> None:
        root = self.workdir / "scale-store-embedded"
        shutil.rmtree(root, ignore_errors=True)
        config = write_sync_config(self.workdir / "scale-sync.yaml", registry.url, root)
        for case in ("cold", "noop"):
            before = registry.total_requests()
            done = run_sync(config, self.workdir / f"scale-sync-{case}.log")
            figures = _embedded(self.repos, done, registry, before)
            self._record(f"scale.sync.{case}", f"syncworker sync ({case})", figures)
        shutil.rmtree(root, ignore_errors=True)

    def fanout(self, registry: SyntheticRegistry) -> None:
        """Walk the whole catalog in this process, nothing consuming: seconds per page."""
        with RedisServer() as server:
            path = write_sync_config(
                self.workdir / "scale-fanout.yaml", registry.url,
                self.workdir / "scale-store-fanout", redis_url=server.url,
            )  # fmt: skip
            config = load_config(str(path))
            with Runtime.open(config) as runtime:
                app = create_app(config)
                queue = CeleryWalkQueue(app, config.syncworker.repos_per_task)
                pages = _walk_alone(queue, runtime.coordinator, runtime.mirror)
        walls, cpus = [wall for wall, _ in pages], [cpu for _, cpu in pages]
        params = {"repos": self.repos, "walk_pages": walls, "walk_cpu": cpus}
        label = f"walk alone: {len(pages)} pages of {PAGE}"
        sample = Sample(sum(walls), 0, Traffic(0, 0, 0), sum(cpus))
        self.measurements.append(Measurement("scale.walk", label, 0, 0, 0, [sample], params))
        self.log(f"scale.walk: pages {[round(w, 3) for w in walls]} s, CPU {sum(cpus):.2f} s")

    def workers(self, registry: SyntheticRegistry) -> None:
        root = self.workdir / "scale-store-workers"
        logs = self.workdir / "scale-workers"
        for path in (root, logs):
            shutil.rmtree(path, ignore_errors=True)
        logs.mkdir(parents=True)
        with RedisServer() as server, RedisServer() as broker:
            config = write_sync_config(
                logs / "config.yaml", registry.url, root,
                redis_url=server.url, broker_url=broker.url,
            )  # fmt: skip
            client = redis.Redis.from_url(server.url)
            redises = (client, redis.Redis.from_url(broker.url))
            workers = CeleryWorkers(config, SCALE_WORKERS, logs, concurrency=SCALE_PROCESSES)
            with workers:
                for case in ("cold", "noop"):
                    self._workers_case(case, registry, redises, workers, logs)
            self._retained(client)
            self._status(client, config, logs)
        shutil.rmtree(root, ignore_errors=True)

    def _workers_case(
        self,
        case: str,
        registry: SyntheticRegistry,
        redises: tuple[redis.Redis, redis.Redis],
        workers: CeleryWorkers,
        logs: Path,
    ) -> None:
        client, broker = redises
        pages_before = len(_walk_pages(logs, 0))
        requests_before = registry.total_requests()
        before = (
            redis_commands(client),
            redis_commands(broker),
            redis_cpu(client) + redis_cpu(broker),
        )
        done = workers.trigger(logs / f"trigger-{case}.log")
        time.sleep(1)  # the last acks and counts land after the run reads as finished
        ours = Counter({"info": 2})  # our own reads: commandstats and cpu
        commands = redis_commands(client) - before[0] - ours
        broker_commands = redis_commands(broker) - before[1] - ours
        server_cpu = redis_cpu(client) + redis_cpu(broker) - before[2]
        figures = ScaleFigures(
            self.repos,
            done.wall,
            done.cpu,
            registry.total_requests() - requests_before,
            sum(commands.values()),
            dict(commands),
            sum(broker_commands.values()),
            dict(broker_commands),
            _walk_pages(logs, pages_before),
            server_cpu,
        )
        check_ok(done, f"scale run ({case})")
        label = f"{SCALE_WORKERS} workers × {SCALE_PROCESSES} processes ({case})"
        self._record(f"scale.workers.{case}", label, figures)

    def _retained(self, client: redis.Redis) -> None:
        held = run_key_bytes(client)
        runs = int(client.zcard(f"{PREFIX}:runs"))
        self.measurements.append(
            Measurement(
                "scale.retained",
                f"bytes of run keys after {runs} finished runs",
                0,
                0,
                self.repos,
                [],
                {"bytes": held, "runs": runs, "per_repo": held / self.repos},
            )  # fmt: skip
        )
        self.log(f"scale.retained: {held} bytes after {runs} runs, {held / self.repos:.1f}/repo")

    def _status(self, client: redis.Redis, config: Path, logs: Path) -> None:
        coord = Coordinator(client)
        kept = int(client.zcard(f"{PREFIX}:runs"))
        for number in range(kept, STATUS_RUNS):
            run_id = f"bench-{number:04d}"
            # A registry of its own each: Redis keeps runsKept (20) runs per registry.
            coord.start_run(f"upstream-{number:04d}", run_id)
            coord.incr(run_id, repos_total=self.repos, repos_done=self.repos)
            coord.finish_run(run_id)
        started = time.perf_counter()
        assert len(coord.runs(STATUS_RUNS)) == STATUS_RUNS
        read = time.perf_counter() - started
        argv = syncworker_argv("status", "-c", str(config), "-n", str(STATUS_RUNS))
        done = run_measured(
            argv, env=child_env(), cwd=code_root(), timeout=RUN_TIMEOUT, log=logs / "status.log"
        )
        check_ok(done, "syncworker status")
        sample = Sample(done.wall, done.peak_rss, Traffic(0, 0, 0), done.cpu)
        label = f"syncworker status, {STATUS_RUNS} finished runs kept"
        self.measurements.append(
            Measurement(
                "scale.status", label, 0, 0, 0, [sample], {"runs": STATUS_RUNS, "read_s": read}
            )
        )
        self.log(f"scale.status: {done.wall:.2f}s, {done.cpu:.2f} CPU s; reading: {read:.3f}s")


def _walk_alone(
    queue: CeleryWalkQueue, coord: Coordinator, mirror: Mirror
) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each page of a walk of the whole catalog."""
    run_id = claim_walk(coord, REGISTRY, "scale-fanout").run_id

    enqueue = queue.send_repos
    pages = []
    while True:
        wall, cpu = time.perf_counter(), time.process_time()
        step = walk_page(coord, mirror, REGISTRY, run_id, enqueue, PAGE)
        pages.append((time.perf_counter() - wall, time.process_time() - cpu))
        if step is not Step.MORE:
            return pages


def measure_scale(workdir: Path, log: Callable[[str], None], repos: int) -> list[Measurement]:
    """Every scale measurement, against one synthetic registry."""
    bench = ScaleBench(workdir, log, repos)
    with SyntheticRegistry(repos, layer_size=LAYER_SIZE) as registry:
        bench.fanout(registry)
        bench.embedded(registry)
        bench.workers(registry)
    return bench.measurements


def page_seconds(measurement: Measurement) -> float | None:
    """Median seconds of the walk pages of a full catalog page (the last one is shorter)."""
    pages = measurement.params.get("walk_pages") or []
    full = pages[:-1] or pages
    return statistics.median(full) if full else None
