"""``syncworker sync -c FILE``: mirror in this process, with nothing else to start."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from syncworker.cli.plans import print_plan, print_pruned
from syncworker.cli.units import human_size
from syncworker.config import Config, load_config
from syncworker.config.engine import build_mirror
from syncworker.engine import LocalLocks, RepoResult, run_registries
from syncworker.store import store_for

if TYPE_CHECKING:
    from syncworker.coord import Coordinator

__all__ = ["add_parser", "locks_for"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("sync", help="mirror now, in this process")
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON (a zot config works)")
    parser.add_argument(
        "-r", "--registry", action="append", help="only this registry (by name); repeatable"
    )
    parser.add_argument("--concurrency", type=int, help="repositories in parallel")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be copied, pruned or left, and the bytes to fetch; write nothing",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if not config.sync.enable:
        print("syncworker: extensions.sync.enable is false: nothing to do", file=sys.stderr)
        return 0
    registries = args.registry or [r.name for r in config.registries]
    for name in registries:
        config.registry(name)  # an unknown name is a ConfigError before any traffic
    concurrency = args.concurrency or config.syncworker.concurrency
    locks = locks_for(config)
    coord = None if isinstance(locks, LocalLocks) else locks  # Redis: shared by processes
    store = store_for(config, hints=coord)  # where a registry destination holds each blob
    if not args.dry_run:
        store.clean_leftovers()
    printer = RepoPrinter(sys.stderr, quiet=args.quiet)
    limiters = coord  # the upstreams' rate budgets, cluster-wide
    with build_mirror(config, store, locks, limiters=limiters) as mirror:
        summary = run_registries(
            mirror, registries, concurrency, on_repo_done=printer, dry_run=args.dry_run
        )
    out = sys.stdout
    if args.dry_run:
        return print_plan(summary, out)
    print(
        f"mirrored {len(summary.results)} repositories in {summary.elapsed:.1f}s: "
        f"{summary.copied} images copied, {summary.skipped} unchanged, "
        f"{summary.blobs_fetched} blobs fetched ({human_size(summary.bytes_copied)}), "
        f"{len(summary.failures)} failures",
        file=out,
    )
    for failure in summary.failures:
        print(f"  FAILED {failure}", file=out)
    print_pruned(summary.results, out)
    return 1 if summary.failures else 0


def locks_for(config: Config) -> LocalLocks | Coordinator:
    """Redis when configured (several `sync` processes then share locks, single-flights and
    upstream rate limits), otherwise threading locks in this process, with nothing of Redis
    loaded."""
    url = config.syncworker.redis_url
    if not url:
        return LocalLocks()
    from syncworker.coord import Coordinator  # redis-py, only when it is used

    coord = Coordinator.from_url(url)
    coord.ping()  # a configured Redis that does not answer fails the command at once
    return coord


class RepoPrinter:
    """One line per finished repository, numbered, to stderr."""

    def __init__(self, stream: TextIO, quiet: bool) -> None:
        self._stream = stream
        self._quiet = quiet
        self._done = 0
        self._lock = threading.Lock()

    def __call__(self, result: RepoResult) -> None:
        with self._lock:
            self._done += 1
            if self._quiet:
                return
            state = "FAILED" if result.failures else "ok"
            print(
                f"[{self._done:>5}] {result.registry}/{result.upstream_repo}: {state}, "
                f"{len(result.copied)} copied, {len(result.skipped)} unchanged, "
                f"{human_size(result.bytes_copied)}",
                file=self._stream,
                flush=True,
            )
