"""syncworker: a distributed mirror for OCI container registries.

Copies manifests, indexes, blobs, signatures and referrers from upstream registries into
OCI image layouts (a filesystem or S3) or another registry: now, in this process (`sync`),
or on a schedule with Celery workers coordinated through Redis (`worker`, `beat`,
`trigger`, `status`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from syncworker.errors import ConfigError, SyncworkerError
from syncworker.observe.logs import JsonFormatter, TextFormatter, redact_handlers
from syncworker.redact import quiet_library_loggers

__all__ = ["build_parser", "main", "verbosity"]

# Sub-command -> (module, one-line help). Each module gives add_parser(subparsers) and sets
# `func` on its parser. Only the module of the command being run is imported: Celery alone
# takes about a second to import, and `sync` and `validate` never need it.
COMMANDS = {
    "sync": ("syncworker.cli.sync", "mirror now, in this process"),
    "validate": ("syncworker.cli.validate", "check a configuration file"),
    "worker": ("syncworker.cli.worker", "run a Celery worker"),
    "beat": ("syncworker.cli.beat", "run Celery beat: each registry's walk on its schedule"),
    "trigger": ("syncworker.cli.trigger", "start a walk or an on-demand image sync"),
    "inspect": ("syncworker.cli.inspect", "ask the workers what they are doing (celery inspect)"),
    "status": ("syncworker.cli.status", "runs in progress and recent"),
    "api": ("syncworker.cli.api", "serve registry webhooks and sync requests over HTTP"),
    "gc": ("syncworker.cli.gc", "remove blobs that no index.json reaches"),
    "check": ("syncworker.cli.check", "check that every mirrored tree is whole; repair it"),
    "serve": ("syncworker.cli.serve", "serve the mirror as a read-only registry"),
}

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2
# `sync`: nothing failed, but an upstream's pull budget deferred something.
EXIT_DEFERRED = 3
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# -vv: DEBUG logging and Python tracebacks.
TRACEBACK_VERBOSITY = 2
#: `text` or `json` when --log-format is not given.
LOG_FORMAT_ENV = "SYNCWORKER_LOG_FORMAT"
LOG_FORMATS = ("text", "json")
# Where -v before and after the sub-command are counted (see _add_logging_options).
VERBOSE_BEFORE, VERBOSE_AFTER = "verbose", "verbose_after_command"


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The full parser of the command named in ``argv``; the others as stubs that only
    carry their help line (all of them in full when none is named)."""
    chosen = next((a for a in argv if a in COMMANDS), None)
    parser = argparse.ArgumentParser(
        prog="syncworker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_logging_options(parser, VERBOSE_BEFORE)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (module, summary) in COMMANDS.items():
        if chosen is None or name == chosen:
            importlib.import_module(module).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=summary)
    for sub in subparsers.choices.values():
        _add_logging_options(sub, VERBOSE_AFTER)
    return parser


def _add_logging_options(parser: argparse.ArgumentParser, verbose_dest: str) -> None:
    """``-v`` and ``--log-format``, accepted before and after the sub-command (their
    defaults are suppressed, so a sub-command's parser never resets what came before).
    The ``-v`` before and after count into two names, added up by :func:`verbosity`:
    argparse parses a sub-command into a fresh namespace and copies it over the main one,
    so one shared count would keep only the sub-command's part."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest=verbose_dest,
        default=argparse.SUPPRESS,
        help="more logging",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=argparse.SUPPRESS,
        help=f"log lines as text or one JSON object per line (default: ${LOG_FORMAT_ENV}, "
        "else text)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    args.verbose = verbosity(args)
    args.log_format = getattr(args, "log_format", None) or _env_log_format(parser)
    _setup_logging(args.verbose, args.log_format)
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
    except Exception as exc:  # a bug: one line, the traceback only with -vv
        if args.verbose >= TRACEBACK_VERBOSITY:
            raise
        print(f"syncworker: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURES
    return code


def verbosity(args: argparse.Namespace) -> int:
    """How many ``-v`` were given, before and after the sub-command together."""
    return int(getattr(args, VERBOSE_BEFORE, 0)) + int(getattr(args, VERBOSE_AFTER, 0))


def _env_log_format(parser: argparse.ArgumentParser) -> str:
    chosen = os.environ.get(LOG_FORMAT_ENV) or "text"
    if chosen not in LOG_FORMATS:
        parser.error(f"{LOG_FORMAT_ENV}={chosen!r}: expected one of {', '.join(LOG_FORMATS)}")
    return chosen


def _setup_logging(verbose: int, log_format: str) -> None:
    """``-v`` INFO, ``-vv`` DEBUG with tracebacks. The HTTP and AWS libraries stay at INFO
    whatever the level: their DEBUG lines carry request headers and signed URLs."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    tracebacks = verbose >= TRACEBACK_VERBOSITY
    handler = logging.StreamHandler()
    formatter: logging.Formatter = (
        JsonFormatter(tracebacks=tracebacks)
        if log_format == "json"
        else TextFormatter(LOG_FORMAT, tracebacks=tracebacks)
    )
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler])
    # Python's warnings (a library's deprecation, Celery's root warning) as log lines too:
    # printed raw, they would break a JSON stream.
    logging.captureWarnings(log_format == "json")
    redact_handlers(logging.getLogger())
    quiet_library_loggers(level)


if __name__ == "__main__":
    sys.exit(main())
