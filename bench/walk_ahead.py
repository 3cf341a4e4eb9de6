"""``python -m bench.walk_ahead``: the broker's memory over a run of many repositories, with
the walk held ``walkAhead`` repositories ahead of the workers and without a bound.

A synthetic registry serves ``--repos`` one-tag repositories; the content rule filters every
tag out (``tags.regex`` matching none), so each repository costs its share of a message,
its tag list and its count, with nothing to copy first: the walk outruns the workers as it
does in a no-op run. Per case a fresh coordination Redis and a fresh broker Redis, 2 workers × 2
processes, one ``syncworker trigger --wait``. Measured: wall time, the workers' CPU seconds,
the broker's ``syncworker.repo`` length and ``used_memory`` sampled every 50 ms (their
peaks) and its ``used_memory_peak``, and the box's load before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import redis
import yaml

from bench.report import BENCH_DIR
from bench.sections import WALK_AHEAD_SECTION, splice
from bench.tools import CeleryWorkers, check_ok, snapshot_code
from syncworker.coord import Coordinator
from syncworker.worker.tasknames import QUEUE_REPO
from tests.support.redis_server import RedisServer
from tests.support.synthetic_registry import SyntheticRegistry

__all__ = ["Case", "main"]

START, END = WALK_AHEAD_SECTION
UNBOUNDED = 10**9
WORKERS, PROCESSES = 2, 2


@dataclass(frozen=True)
class Case:
    walk_ahead: int
    repos: int
    wall: float
    cpu: float
    peak_queue: int
    peak_memory_mib: float  # sampled used_memory
    used_memory_peak_mib: float  # the server's own
    repos_done: int
    load_before: float
    load_after: float


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


class _Sampler(threading.Thread):
    def __init__(self, client: redis.Redis) -> None:
        super().__init__(daemon=True)
        self._client, self._done = client, threading.Event()
        self.queue, self.memory = 0, 0

    def run(self) -> None:
        while not self._done.wait(0.05):
            self.queue = max(self.queue, int(self._client.llen(QUEUE_REPO)))
            self.memory = max(self.memory, int(self._client.info("memory")["used_memory"]))

    def stop(self) -> None:
        self._done.set()
        self.join()


def _config(path: Path, upstream: str, redis_url: str, broker_url: str, ahead: int) -> Path:
    rule = {"prefix": "**", "tags": {"regex": "^no tag is named this$"}}
    config = {
        "storage": {"rootDirectory": str(path.parent / "store")},
        "extensions": {
            "sync": {"registries": [{"name": "upstream", "urls": [upstream], "content": [rule]}]}
        },
        "syncworker": {
            "redis": redis_url,
            "walkAhead": ahead,
            "celery": {"broker_url": broker_url},
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _case(workdir: Path, registry: SyntheticRegistry, ahead: int, number: int) -> Case:
    logs = workdir / f"{number}-ahead-{ahead}"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    with RedisServer() as coord, RedisServer() as broker:
        config = _config(logs / "config.yaml", registry.url, coord.url, broker.url, ahead)
        client = redis.Redis.from_url(broker.url)
        with CeleryWorkers(config, WORKERS, logs, concurrency=PROCESSES) as workers:
            sampler = _Sampler(client)
            sampler.start()
            load = _load()
            done = workers.trigger(logs / "trigger.log")
            sampler.stop()
        check_ok(done, f"run with walkAhead {ahead}")
        peak = int(client.info("memory")["used_memory_peak"])
        run = Coordinator(redis.Redis.from_url(coord.url)).runs(1)[0]
        repos_done = run.counters.get("repos_done", 0)
    case = Case(
        ahead, len(registry.repos), done.wall, done.cpu, sampler.queue,
        sampler.memory / 2**20, peak / 2**20, repos_done, load, _load(),
    )  # fmt: skip
    print(f"[walk-ahead] {case}", flush=True)
    return case


def section(cases: list[Case]) -> list[str]:
    lines = [
        START,
        "## Broker back-pressure (`walkAhead`)",
        "",
        f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, as the last run ended;"
        f" {os.cpu_count()} cores, shared.",
        "",
        "`python -m bench.walk_ahead`: every tag filtered out, so each repository costs its"
        " share of a message, its tag list and its count;"
        f" {WORKERS} workers × {PROCESSES} processes, a fresh coordination Redis and broker"
        " Redis per row. Peak queue (in messages) and broker memory sampled every 50 ms;"
        " `used_memory_peak` is the broker's own; CPU is the workers' and the trigger's.",
        "",
        "| walkAhead | repositories | counted done | peak `syncworker.repo` length |"
        " broker memory peak MiB (sampled / server's) | wall s | CPU s | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        ahead = "unbounded" if c.walk_ahead >= UNBOUNDED else f"{c.walk_ahead:,}"
        lines.append(
            f"| {ahead} | {c.repos:,} | {c.repos_done:,} | {c.peak_queue:,} |"
            f" {c.peak_memory_mib:.1f} / {c.used_memory_peak_mib:.1f} | {c.wall:.0f} |"
            f" {c.cpu:.1f} | {c.load_before:.1f}–{c.load_after:.1f} |"
        )
    lines.append(END)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.walk_ahead", description=__doc__)
    parser.add_argument("--repos", type=int, default=20_000)
    parser.add_argument("--bound", type=int, default=2_000, help="walkAhead of the bounded run")
    parser.add_argument(
        "--rounds", type=int, default=1, help="bounded and unbounded runs in turn, this many each"
    )
    parser.add_argument("--workdir", type=Path, default=BENCH_DIR / "out" / "walk-ahead")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    snapshot_code(args.workdir)
    cases = []
    with SyntheticRegistry(args.repos) as registry:
        for number, ahead in enumerate((args.bound, UNBOUNDED) * args.rounds, 1):
            cases.append(_case(args.workdir, registry, ahead, number))
            (args.workdir / "cases.json").write_text(json.dumps([asdict(c) for c in cases]))
    text = args.results.read_text() if args.results.exists() else ""
    args.results.write_text(splice(text, section(cases), START, END))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
