"""``syncworker status -c FILE [RUN] [--json] [--watch]``: runs in progress and recent ones.

Counts, rate, ETA, and failures grouped by repository with their causes. Everything shown
comes from the run state in Redis, whose failure reasons are redacted when recorded, and no
URL or credential of the configuration is ever printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from syncworker.cli.runtext import describe, print_failures
from syncworker.cli.units import positive_int, positive_seconds
from syncworker.config import load_config
from syncworker.coord import RECENT_RUNS
from syncworker.runtime import Runtime

__all__ = ["RUN_STATE", "add_parser", "describe", "print_failures", "run"]

# What the commands that read or start runs need Redis for (named when none is configured).
RUN_STATE = "run state (status, trigger)"

# --watch: seconds between refreshes, and failed repositories shown per run.
WATCH_SECONDS = 2.0
FAILURES_WATCHED = 10


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="runs in progress and recent")
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON config file")
    parser.add_argument("run", nargs="?", help="one run id (default: recent runs)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-n", "--limit", type=positive_int, default=RECENT_RUNS, help="runs listed")
    parser.add_argument(
        "--watch",
        type=positive_seconds,
        nargs="?",
        const=WATCH_SECONDS,
        metavar="SECONDS",
        help=f"refresh in place every SECONDS (default {WATCH_SECONDS:g}; a refresh takes up "
        "to 1 s, the workers' ping) with workers, queues and next scheduled walks; with "
        "--json, a JSON line per refresh",
    )
    parser.add_argument(
        "--failures",
        type=int,
        default=FAILURES_WATCHED,
        help="failed repositories per run (--watch)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with Runtime.open(config, upto="redis", redis=RUN_STATE) as runtime:
        return _show(args, runtime)


def _show(args: argparse.Namespace, runtime: Runtime) -> int:
    config, coord = runtime.config, runtime.coordinator
    if args.watch is not None:
        from syncworker.cli.watch import watch  # Celery: only for --watch

        return watch(args, config, coord)
    if args.run:
        found = coord.run_status(args.run)
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
