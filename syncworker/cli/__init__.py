"""The ``syncworker`` command: one sub-command per module of this package."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from syncworker.cli import beat, status, sync, trigger, validate, worker
from syncworker.errors import ConfigError, SyncworkerError

__all__ = ["main"]

# Each module gives add_parser(subparsers) and sets `func` on its parser.
COMMANDS = [sync, validate, worker, beat, trigger, status]

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncworker", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"syncworker: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SyncworkerError as exc:
        print(f"syncworker: {exc}", file=sys.stderr)
        return EXIT_FAILURES
    except KeyboardInterrupt:
        print("syncworker: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
