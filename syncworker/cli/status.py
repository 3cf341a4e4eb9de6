"""``syncworker status -c FILE [RUN] [--json] [--watch]``: runs in progress and recent ones.

Counts, rate, ETA, and failures grouped by repository with their causes. Everything shown
comes from the run state in Redis, whose failure reasons are redacted when recorded, and no
URL or credential of the configuration is ever printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Any, TextIO

from syncworker.cli.units import human_size
from syncworker.config import Config, load_config
from syncworker.coord import Coordinator, RunStatus

__all__ = ["RECENT_RUNS", "add_parser", "coordinator", "describe", "print_failures", "run"]

# Recent runs listed without a RUN argument.
RECENT_RUNS = 10
# Failures printed per run in the text form (--json has them all).
FAILURES_SHOWN = 50
# --watch: seconds between refreshes, and failed repositories shown per run.
WATCH_SECONDS = 2.0
FAILURES_WATCHED = 10


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="runs in progress and recent")
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON config file")
    parser.add_argument("run", nargs="?", help="one run id (default: recent runs)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-n", "--limit", type=int, default=RECENT_RUNS, help="runs listed")
    parser.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=WATCH_SECONDS,
        metavar="SECONDS",
        help=f"refresh in place every SECONDS (default {WATCH_SECONDS:g}) with workers, "
        "queues and next scheduled walks; with --json, a JSON line per refresh",
    )
    parser.add_argument(
        "--failures",
        type=int,
        default=FAILURES_WATCHED,
        help="failed repositories per run (--watch)",
    )
    parser.set_defaults(func=run)


def coordinator(config: Config) -> Coordinator:
    """The configured Redis, checked: one that does not answer is a CoordError now, not
    minutes of a client's (or Celery's) reconnection attempts later."""
    coord = Coordinator.from_url(config.syncworker.require_redis_url("run state (status, trigger)"))
    coord.ping()
    return coord


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    coord = coordinator(config)
    if args.watch is not None:
        from syncworker.cli.watch import watch  # Celery: only for --watch

        return watch(args, config, coord)
    if args.run:
        found = coord.run(args.run)
        if found is None:
            print(f"syncworker: no run {args.run!r} (unknown or expired)", file=sys.stderr)
            return 1
        runs = [found]
    else:
        runs = coord.runs(args.limit)
    if args.json:
        payload: Any = runs[0].to_dict() if args.run else [r.to_dict() for r in runs]
        print(json.dumps(payload, indent=2, sort_keys=True))
        return 0
    if not runs:
        print("no runs yet")
    for status in runs:
        print(describe(status))
        print_failures(status, sys.stdout)
    return 0


def describe(status: RunStatus) -> str:
    """One line: id, registry, state, counts, rate and ETA."""
    c = status.counters
    failed = c.get("repos_failed", 0)
    parts = [
        f"{status.id} {status.registry} {status.state}:",
        f"{status.done}/{status.total} repos" + (f" ({failed} failed)" if failed else ""),
        f"{c.get('images_copied', 0)} images copied, {c.get('images_skipped', 0)} unchanged,",
        f"{human_size(c.get('bytes', 0))},",
        f"{status.rate:.2f} repos/s,",
        f"elapsed {_duration(status.elapsed)}",
    ]
    eta = status.eta_seconds
    if status.state == "running":
        parts.append(f"ETA {_duration(eta)}" if eta is not None else "ETA unknown")
    return " ".join(parts)


def print_failures(status: RunStatus, out: TextIO, limit: int = FAILURES_SHOWN) -> None:
    """Failures grouped by repository, each cause once per tag."""
    by_repo: dict[str, list[str]] = defaultdict(list)
    for failure in status.failures:
        where = f"{failure.tag}: " if failure.tag else ""
        by_repo[failure.repo].append(f"{where}{failure.reason}")
    for shown, (repo, causes) in enumerate(sorted(by_repo.items())):
        if shown >= limit:
            print(f"  ... and {len(by_repo) - limit} more repositories", file=out)
            return
        print(f"  FAILED {repo}", file=out)
        for cause in causes:
            print(f"    {cause}", file=out)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
