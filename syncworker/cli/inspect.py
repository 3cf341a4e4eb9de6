"""``syncworker inspect -c FILE COMMAND [options]``: Celery's ``celery inspect`` (``active``,
``ping``, ``stats``, ``registered``, ``active_queues``...) against the broker of ``FILE``,
from any shell: no ``SYNCWORKER_CONFIG`` or ``-A`` to set."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from syncworker.celeryapp import create_app
from syncworker.cli.celeryrun import prepare

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="ask the workers what they are doing (Celery's `inspect`, e.g. `active`, `ping`)",
        description="Every argument after the config goes to `celery inspect`: "
        "e.g. `syncworker inspect -c mirror.yaml active -t 5 -d syncworker-42@host`.",
        allow_abbrev=False,
    )
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON config file")
    parser.set_defaults(func=run, accepts_extra=True)


def run(args: argparse.Namespace) -> int:
    from click import ClickException  # Celery's command line is click's

    with prepare(args) as runtime:  # Redis answered
        config = runtime.config
    app = create_app(config)
    try:
        code = app.start(["inspect", *args.extra])
    except ClickException as exc:  # e.g. no node replied: Celery's own message and code
        print(f"syncworker: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    finally:
        app.close()
    return int(code or 0)
