"""What ``syncworker worker`` and ``syncworker beat`` share: the config checked and Redis
reached before Celery starts, then Celery's own command in our log format."""

from __future__ import annotations

import argparse
import os

from syncworker.celeryapp import create_app
from syncworker.cli.celerylogs import celery_log_format, quiet_banner
from syncworker.cli.status import RUN_STATE
from syncworker.config import Config, load_config
from syncworker.runtime import Runtime
from syncworker.worker.tasknames import CONFIG_ENV

__all__ = ["prepare", "start"]


def prepare(args: argparse.Namespace) -> Runtime:
    """The loaded config with a Coordinator that answered: a bad file or an unreachable
    Redis fails here, in one line, not after Celery's connection retries."""
    config = load_config(args.config)
    # Prefork children and `celery inspect` re-read the config through this variable.
    os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    return Runtime.open(config, upto="redis", redis=RUN_STATE)


def start(args: argparse.Namespace, config: Config, command: str) -> int:
    """Run Celery's ``command`` (``worker`` or ``beat``) for ``config`` until it exits."""
    celery_log_format(args.log_format, per_task_lines=args.verbose > 0)
    app = create_app(config)
    app.set_current()
    code = app.start(
        [*quiet_banner(args.log_format), command, f"--loglevel={args.loglevel}", *args.extra]
    )
    return int(code or 0)
