"""``syncworker beat -c FILE``: fires each registry's walk on its schedule (RedBeat: with
several replicas, the one holding the lock in Redis fires, the others stand by)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from syncworker.cli.celeryrun import prepare, start
from syncworker.worker.schedule import registry_schedule

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "beat", help="run the scheduler (one active replica)", allow_abbrev=False
    )
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON config file")
    parser.add_argument("-l", "--loglevel", default="INFO", help="beat log level")
    parser.set_defaults(func=run, accepts_extra=True)


def run(args: argparse.Namespace) -> int:
    with prepare(args) as runtime:  # Redis answered
        config = runtime.config
    if not any(registry_schedule(reg) for reg in config.registries):
        print(
            "syncworker: no registry has a pollInterval or a schedule: this beat fires"
            " nothing (walks start only with `syncworker trigger`)",
            file=sys.stderr,
            flush=True,
        )
    return start(args, config, "beat")
