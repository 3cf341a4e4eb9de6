"""``syncworker worker -c FILE [celery worker options]``: a Celery worker for the mirror."""

from __future__ import annotations

import argparse
import os
from typing import Any

from syncworker.celeryapp import create_app
from syncworker.cli.celerylogs import celery_log_format, quiet_banner
from syncworker.cli.status import coordinator
from syncworker.config import load_config
from syncworker.coord import Coordinator
from syncworker.worker.names import CONFIG_ENV

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run a Celery worker (extra options go to `celery worker`, e.g. -Q, --concurrency)",
        # `--concurrency` must reach Celery, not be read as an abbreviation of ours.
        allow_abbrev=False,
    )
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON config file")
    parser.add_argument("-l", "--loglevel", default="INFO", help="worker log level")
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on this port (the sum of every pool process)",
    )
    parser.set_defaults(func=run, accepts_extra=True)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # a bad file fails here, before Celery starts
    # Prefork children and `celery inspect` re-read the config through this variable.
    os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    coord = coordinator(config)  # an unreachable Redis fails here, not after Celery's retries
    if args.metrics_port is None:
        coord.close()
    else:
        _serve_metrics(args.metrics_port, coord)
    celery_log_format(args.log_format)
    app = create_app(config)
    app.set_current()
    code = app.start(
        [*quiet_banner(args.log_format), "worker", f"--loglevel={args.loglevel}", *args.extra]
    )
    return int(code or 0)


def _serve_metrics(port: int, coord: Coordinator) -> None:
    """Metrics from every pool process (multiprocess mode, set before the children fork),
    with the cluster's runs read through ``coord`` at each scrape."""
    from syncworker.observe.serve import enable_multiprocess, serve_workers

    enable_multiprocess()
    serve_workers(port, coord.runs)
