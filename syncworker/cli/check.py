"""``syncworker check -c FILE [--deep] [--repair] [-r NAME]``: is every mirrored tree whole?

Every tree of every repository's ``index.json`` (tags and stored referrers): its manifests
present and hashing to their digests, its blobs present at their size, and with ``--deep``
hashing to their digests. One line per broken tree naming each entry that lists it, exit 1
if any. ``--repair`` copies
the broken trees again from their upstream, trusting nothing present, then checks again.
With Redis configured the workers check, a task per repository, as a run
(:mod:`syncworker.cli.checkcluster`); otherwise this process does, on a thread pool.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any, TextIO

from syncworker.cli.units import REPOSITORIES, counted, human_size, positive_int
from syncworker.config import load_config
from syncworker.engine.checkrun import CheckOutcome, check_repos, store_repos
from syncworker.runtime import Runtime

__all__ = ["add_parser", "print_outcome"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("check", help="check that every mirrored tree is whole")
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON (a zot config works)")
    parser.add_argument(
        "--deep", action="store_true", help="also hash every blob again (reads all the bytes)"
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="copy broken trees again from their upstream, then check again",
    )
    parser.add_argument(
        "-r",
        "--registry",
        action="append",
        help="only the repositories this registry (by name) mirrors into; repeatable",
    )
    parser.add_argument(
        "--concurrency", type=positive_int, help="repositories in parallel (in this process)"
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="check in this process even when Redis is configured (no workers needed)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no line per whole repository")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    for name in args.registry or ():
        config.registry(name)  # an unknown name is a ConfigError before anything is read
    if config.syncworker.redis_url and not args.local:
        from syncworker.cli.checkcluster import check_on_workers  # Celery: only here

        return check_on_workers(args, config, args.registry)
    started = time.monotonic()
    with Runtime.open(config) as runtime:
        if args.repair:  # a writer killed before (a crash, a repair cut short)
            runtime.store.clean_leftovers()
        mirror = runtime.mirror
        repos = store_repos(mirror, args.registry)
        printer = Printer(sys.stdout, sys.stderr, quiet=args.quiet)
        outcomes = check_repos(
            mirror,
            repos,
            deep=args.deep,
            repair=args.repair,
            concurrency=args.concurrency or config.syncworker.concurrency,
            on_done=printer,
        )
    printer.summary(time.monotonic() - started)
    return 0 if all(o.final.ok for o in outcomes) else 1


def print_outcome(outcome: CheckOutcome, out: TextIO) -> None:
    """The lines of one repository: each broken tree, what a repair did, what is left."""
    for tree in outcome.found.broken:
        print(f"BROKEN {tree}", file=out)
    if outcome.found.error is not None:
        print(f"FAILED {outcome.found.repo}: {outcome.found.error}", file=out)
    if outcome.repair is None or outcome.after is None:
        return
    for name in outcome.repair.copied:
        print(f"REPAIRED {name}", file=out)
    for failure in outcome.repair.failures:
        print(f"NOT REPAIRED {failure.reason}", file=out)
    for tree in outcome.after.broken:
        print(f"STILL BROKEN {tree}", file=out)
    if outcome.after.error is not None:
        print(f"FAILED {outcome.after.repo}: {outcome.after.error}", file=out)


class Printer:
    """Lines as each repository ends (flushed: an operator watches a long check): what is
    broken on ``out``, a numbered line per whole repository on ``progress`` (none with
    ``quiet``); then the counts."""

    def __init__(self, out: TextIO, progress: TextIO, *, quiet: bool) -> None:
        self._out = out
        self._progress = progress
        self._quiet = quiet
        self._lock = threading.Lock()
        self.repos = self.trees = self.blobs = self.hashed = 0
        self.broken = self.repaired = self.left = 0

    def __call__(self, outcome: CheckOutcome) -> None:
        with self._lock:
            found, final = outcome.found, outcome.final
            self.repos += 1
            self.trees += found.trees
            self.blobs += found.blobs
            self.hashed += found.bytes_hashed
            self.broken += len(found.broken) + (found.error is not None)
            self.left += len(final.broken) + (final.error is not None)
            self.repaired += len(outcome.repair.copied) if outcome.repair else 0
            if not found.ok:
                print_outcome(outcome, self._out)
                self._out.flush()
            elif not self._quiet:
                line = (
                    f"[{self.repos:>5}] {found.repo}: ok, {found.trees} trees, {found.blobs} blobs"
                )
                print(line, file=self._progress, flush=True)

    def summary(self, seconds: float) -> None:
        line = (
            f"check: {counted(self.repos, *REPOSITORIES)}, {counted(self.trees, 'tree')},"
            f" {counted(self.blobs, 'blob')}"
            f" ({human_size(self.hashed)} hashed) in {seconds:.1f}s: {self.broken} broken"
        )
        if self.repaired or self.broken != self.left:
            line += f", {self.repaired} repaired, {self.left} still broken"
        print(line, file=self._out)
