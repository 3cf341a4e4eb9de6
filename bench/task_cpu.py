"""``python -m bench.task_cpu --before REV [--after REV]``: what a no-op ``sync_repo`` costs
workers, two revisions' code alternately (A B A B) on the same box.

A synthetic registry serves ``--repos`` one-tag repositories (behind a proxy adding
``--latency`` ms to each request, as a far-away upstream would, if given); a coordination
Redis and a broker Redis of their own count commands (``INFO commandstats``, Lua's own
included) and round trips (``total_reads_processed``: one per read of a client's request, so
a pipeline or a script is one). Both codes are compiled to bytecode first (as an installed
program is), a cold run fills the store, then each round starts ``SCALE_WORKERS`` workers of
``SCALE_PROCESSES`` processes from one code and runs a no-op walk: the CPU seconds of the
workers' process trees between the trigger and its end (start-up excluded), and the box's
1-minute load average before and after, are printed as one row per run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import redis

from bench import tools
from bench.proc import tree_cpu
from bench.scale import SCALE_PROCESSES, SCALE_WORKERS, redis_commands, scale_servers
from bench.tools import CeleryWorkers, check_ok, code_at

__all__ = ["main"]

# Not per repository: our own INFO reads, connections saying hello, the run's status polls.
PER_RUN = ("info", "hello", "ping", "client|setinfo", "script|load", "hgetall", "lrange")


def _reads(client: redis.Redis) -> int:
    return int(client.info("stats")["total_reads_processed"])


def _per_repo(client: redis.Redis, before: tuple[dict[str, int], int], repos: int) -> str:
    calls = redis_commands(client)
    commands = sum(n - before[0].get(name, 0) for name, n in calls.items() if name not in PER_RUN)
    # Our own two reads (commandstats, stats) are the only per-run reads left in: negligible.
    return f"{commands / repos:.2f} / {(_reads(client) - before[1]) / repos:.2f}"


def _run(
    name: str, config: Path, logs: Path, redises: tuple[redis.Redis, redis.Redis], repos: int
) -> str:
    coord, broker = redises
    with CeleryWorkers(config, SCALE_WORKERS, logs, concurrency=SCALE_PROCESSES) as workers:
        load = os.getloadavg()[0]
        before = [(dict(redis_commands(c)), _reads(c)) for c in (coord, broker)]
        cpu = tree_cpu(workers.pids)
        done = workers.trigger(logs / f"trigger-{name}.log")
        time.sleep(1)  # the last acks and counts land after the run reads as finished
        used = tree_cpu(workers.pids) - cpu
        check_ok(done, f"no-op run ({name})")
        counts = [_per_repo(c, b, repos) for c, b in zip((coord, broker), before, strict=True)]
    return (
        f"| {name} | {1000 * used / repos:.2f} | {counts[0]} | {counts[1]} |"
        f" {load:.1f}–{os.getloadavg()[0]:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.task_cpu", description=__doc__)
    parser.add_argument("--before", required=True, help="the revision to compare with")
    parser.add_argument("--after", help="the revision compared (default: this checkout)")
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--latency", type=int, default=0, help="ms added to each upstream request (a proxy)"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-task-cpu"))
    args = parser.parse_args()
    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    codes = {"before": code_at(workdir, args.before), "after": code_at(workdir, args.after)}
    rows = [
        f"`{args.repos}` repositories, {SCALE_WORKERS} workers × {SCALE_PROCESSES} processes,"
        f" before = `{args.before}`, after = `{args.after or 'this checkout'}`,"
        f" +{args.latency} ms a request",
        "",
        "| run | worker CPU ms / repo | coordination commands / round trips per repo"
        " | broker commands / round trips per repo | load |",
        "|---|---|---|---|---|",
    ]
    with scale_servers(args.repos, workdir, args.latency) as (config, coord_url, broker_url):
        redises = (redis.Redis.from_url(coord_url), redis.Redis.from_url(broker_url))
        tools.use_code(codes["after"])
        (workdir / "logs-cold").mkdir()
        _run("cold", config, workdir / "logs-cold", redises, args.repos)
        for round_ in range(args.rounds):
            for name, code in codes.items():
                tools.use_code(code)
                logs = workdir / f"logs-{name}-{round_}"
                logs.mkdir()
                rows.append(_run(f"{name} {round_ + 1}", config, logs, redises, args.repos))
                print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
