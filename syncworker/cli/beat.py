"""``syncworker beat -c FILE``: fires each registry's walk on its schedule (RedBeat: with
several replicas, the one holding the lock in Redis fires, the others stand by)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from syncworker.celeryapp import create_app
from syncworker.cli.celerylogs import celery_log_format, quiet_banner
from syncworker.cli.status import coordinator
from syncworker.config import load_config
from syncworker.worker.names import CONFIG_ENV

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "beat", help="run the scheduler (one active replica)", allow_abbrev=False
    )
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON config file")
    parser.add_argument("-l", "--loglevel", default="INFO", help="beat log level")
    parser.set_defaults(func=run, accepts_extra=True)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    coordinator(config).close()  # an unreachable Redis fails here, not after Celery's retries
    celery_log_format(args.log_format)
    app = create_app(config)
    app.set_current()
    code = app.start(
        [*quiet_banner(args.log_format), "beat", f"--loglevel={args.loglevel}", *args.extra]
    )
    return int(code or 0)
