"""``syncworker serve -c FILE [--listen HOST:PORT]``: a read-only registry over the store,
pulling through what an ``onDemand`` registry lacks.

Stateless: run as many replicas as you like over one S3 store (or one shared directory)
behind one address; on-demand copies are coalesced across them through Redis.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from syncworker.cli.units import port_number
from syncworker.config import load_config
from syncworker.observe.exporter import serve_own
from syncworker.observe.metrics import ServeMetrics
from syncworker.runtime import Runtime
from syncworker.serve.wiring import build_server, open_served

__all__ = ["add_parser", "run"]

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="serve the mirror as a read-only registry")
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON config file")
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address to serve on (default: syncworker.serve.listen)",
    )
    parser.add_argument(
        "--metrics-port", type=port_number, help="serve Prometheus metrics on this port"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    metrics = ServeMetrics()
    with Runtime.open(config, upto="store") as runtime:
        served = open_served(runtime, metrics.filled)
        server = build_server(config, served, args.listen, metrics.answered)
        if args.metrics_port:
            serve_own(args.metrics_port)
        _stop_on_term(server.shutdown)
        where = served.store.location()
        _announce(args.log_format, f"syncworker: serving {where} (read-only) on {server.url}")
        with server:
            try:
                server.serve_forever(poll_interval=0.5)
            finally:
                served.close()
    return 0


def _announce(log_format: str, line: str) -> None:
    """The start-up line, seen at the default level (WARNING) without being a warning:
    printed to stderr like Celery's worker banner; a log record at INFO when every line
    must be JSON (the worker drops its banner then)."""
    if log_format == "json":
        log.info(line)
    else:
        print(line, file=sys.stderr, flush=True)


def _stop_on_term(stop: Any) -> None:
    """SIGTERM stops accepting and returns (a container's stop): the shutdown runs on a
    thread, since it waits for the serving loop this signal interrupts."""

    def handler(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=stop, daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
