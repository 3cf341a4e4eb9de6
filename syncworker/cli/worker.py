"""``syncworker worker -c FILE [celery worker options]``: a Celery worker for the mirror."""

from __future__ import annotations

import argparse
import os
from typing import Any

from syncworker.cli.celeryrun import prepare, start
from syncworker.cli.units import port_number
from syncworker.coord import Coordinator

__all__ = ["NODE_NAME", "add_parser", "run"]

# Celery's default node name is ``celery@<host>``: two workers on one host would be one node
# to inspection, ``status --watch`` and Flower, and Celery warns DuplicateNodenameWarning.
# The process id makes each worker its own node; %h is Celery's placeholder for the host.
NODE_NAME = "syncworker-{pid}@%h"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run a Celery worker (extra options go to `celery worker`, e.g. -Q, --concurrency)",
        epilog="Any other option goes to `celery worker`, e.g. --concurrency 4 (pool processes), "
        "-Q syncworker.repo (queues), -P threads (pool); `celery worker --help` lists them.",
        # `--concurrency` must reach Celery, not be read as an abbreviation of ours.
        allow_abbrev=False,
    )
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON config file")
    parser.add_argument("-l", "--loglevel", default="INFO", help="worker log level")
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        help="serve Prometheus metrics on this port (the sum of every pool process)",
    )
    parser.add_argument(
        "-n",
        "--hostname",
        help="this worker's node name (default: syncworker-<pid>@<host>, unique per worker; "
        "Celery's %%h, %%n, %%d and %%i are expanded)",
    )
    parser.set_defaults(func=run, accepts_extra=True)


def run(args: argparse.Namespace) -> int:
    runtime = prepare(args)
    if args.metrics_port is None:
        runtime.close()
    else:  # the scrapes read the runs through its Coordinator for the worker's lifetime
        _serve_metrics(args.metrics_port, runtime.coordinator)
    args.extra = ["--hostname", args.hostname or NODE_NAME.format(pid=os.getpid()), *args.extra]
    return start(args, runtime.config, "worker")


def _serve_metrics(port: int, coord: Coordinator) -> None:
    """Metrics from every pool process (multiprocess mode, set before the children fork),
    with the cluster's runs read through ``coord`` at each scrape."""
    from syncworker.observe.exporter import enable_multiprocess, serve_workers

    enable_multiprocess()
    serve_workers(port, coord)
