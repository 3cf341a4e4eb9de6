"""``syncworker sync -c FILE``: mirror in this process, with nothing else to start."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import threading
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, TextIO

from syncworker.cli import EXIT_DEFERRED, EXIT_FAILURES, EXIT_OK
from syncworker.cli.plans import print_plan, print_pruned
from syncworker.cli.units import REPOSITORIES, counted, human_size, port_number, positive_int, utc
from syncworker.config import load_config
from syncworker.engine import NO_EVENTS, Events, RepoResult, RunSummary, run_registries
from syncworker.observe.fanout import Fanout
from syncworker.observe.logs import JsonFormatter, LogContext, bind_context, clear_context
from syncworker.runtime import Runtime

if TYPE_CHECKING:
    from syncworker.observe.progress import LiveDisplay

__all__ = ["add_parser"]

# The logger named in the JSON form of the per-repository lines.
PRINTER_LOGGER = "syncworker.sync"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("sync", help="mirror now, in this process")
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON (a zot config works)")
    parser.add_argument(
        "-r", "--registry", action="append", help="only this registry (by name); repeatable"
    )
    parser.add_argument("--concurrency", type=positive_int, help="repositories in parallel")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be copied, pruned or left, and the bytes to fetch; write nothing",
    )
    parser.add_argument(
        "--json", action="store_true", help="the summary as one JSON object on stdout"
    )
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        help="serve Prometheus metrics on this port during the run",
    )
    parser.add_argument(
        "--metrics-file",
        help="write Prometheus metrics to this file at the end (node_exporter's textfile "
        "collector)",
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
    if args.concurrency:  # the Mirror's blob and tag pools are sized by it too
        settings = config.syncworker.model_copy(update={"concurrency": args.concurrency})
        config = config.model_copy(update={"syncworker": settings})
    concurrency = config.syncworker.concurrency
    # Redis when configured: several `sync` processes then share locks, single-flights and
    # the upstreams' rate budgets.
    with Runtime.open(config, upto="store") as runtime:
        if not args.dry_run:
            runtime.store.clean_leftovers()
        watch = Watch(args, registries)
        mirror = runtime.open_mirror(watch.events)
        # What start-up built (modules, the configuration, the clients) lives as long as
        # the run: frozen, the garbage collector stops walking it again on every full
        # collection.
        gc.freeze()
        with watch.display or nullcontext():
            summary = run_registries(
                mirror, registries, concurrency, on_repo_done=watch.printer, dry_run=args.dry_run
            )
    watch.finish(summary)
    if args.dry_run:
        return print_plan(summary, sys.stdout)
    if args.json:
        json.dump(summary_json(summary), sys.stdout)
        print()
    else:
        print_summary(summary, sys.stdout)
    return exit_code(summary)


def exit_code(summary: RunSummary) -> int:
    """1 when something failed; else 3 when something was deferred for an upstream's pull
    budget (run again once it refills); else 0."""
    if summary.failures:
        return EXIT_FAILURES
    return EXIT_DEFERRED if summary.deferred else EXIT_OK


def print_summary(summary: RunSummary, out: TextIO) -> None:
    skipped = summary.repos_skipped
    print(
        f"mirrored {counted(summary.repos, *REPOSITORIES)} in {summary.elapsed:.1f}s: "
        f"{counted(summary.copied, 'image')} copied, {summary.skipped} unchanged, "
        f"{counted(summary.blobs_fetched, 'blob')} fetched ({human_size(summary.bytes_copied)}), "
        f"{counted(len(summary.failures), 'failure')}"
        + (f", {counted(len(skipped), *REPOSITORIES)} skipped" if skipped else ""),
        file=out,
    )
    for failure in summary.failures:
        print(f"  FAILED {failure}", file=out)
    for registry, deferred in sorted(summary.deferred.items()):
        print(
            f"  DEFERRED {registry}: {counted(deferred.tags, 'tag')}, its pull budget refills at "
            f"{utc(deferred.refill_at)}",
            file=out,
        )
    for result in skipped:
        print(f"  SKIPPED {result.registry}/{result.upstream_repo}: {result.skip_reason}", file=out)
    print_pruned(summary.noted, out)


def summary_json(summary: RunSummary) -> dict[str, Any]:
    """What another service reads: the counts, each failure with its cause, the duration."""
    return {
        "repositories": summary.repos,
        "repositories_failed": summary.repos_failed,
        "repositories_skipped": len(summary.repos_skipped),
        "images_copied": summary.copied,
        "images_unchanged": summary.skipped,
        "blobs_fetched": summary.blobs_fetched,
        "bytes_fetched": summary.bytes_copied,
        "duration_seconds": round(summary.elapsed, 3),
        "failures": [
            {
                "registry": f.registry,
                "repository": f.upstream_repo,
                "tag": f.tag,
                "reason": f.reason,
            }
            for f in summary.failures
        ],
        "skipped": [
            {"registry": r.registry, "repository": r.upstream_repo, "reason": r.skip_reason}
            for r in summary.repos_skipped
        ],
        "deferred": [
            {"registry": registry, "tags": d.tags, "refill_at": utc(d.refill_at)}
            for registry, d in sorted(summary.deferred.items())
        ],
    }


class Watch:
    """How this run is watched: a live display on a terminal, else a line per repository
    (none with ``--quiet`` or ``--json``); Prometheus metrics when a metrics flag asks. Only
    what is used is imported (rich, prometheus-client)."""

    def __init__(self, args: argparse.Namespace, registries: list[str]) -> None:
        self._args = args
        self._registries = registries
        observers: list[Events] = []
        self.display: LiveDisplay | None = None
        self.printer: RepoPrinter | None = None
        if sys.stderr.isatty() and not (args.quiet or args.json):
            self.display = _live_display(registries)
            observers.append(self.display.progress)
        elif not (args.quiet or args.json):
            self.printer = RepoPrinter(
                sys.stderr, as_json=args.log_format == "json", dry_run=args.dry_run
            )
        if args.metrics_port is not None or args.metrics_file:
            observers.append(self._start_metrics())
        if args.log_format == "json":  # lines name the registry and repository
            observers.append(LogContext())
        self.events: Events = Fanout(observers) if observers else NO_EVENTS

    def _start_metrics(self) -> Events:
        from syncworker.observe.exporter import serve_own
        from syncworker.observe.metrics import MetricsEvents, RunMetrics

        if self._args.metrics_port is not None:
            serve_own(self._args.metrics_port)
        for registry in self._registries:
            RunMetrics(registry).started()
        return MetricsEvents()

    def finish(self, summary: RunSummary) -> None:
        """Count the run's end per registry; write the metrics file if asked."""
        if self._args.metrics_port is None and not self._args.metrics_file:
            return
        from syncworker.observe.exporter import write_textfile
        from syncworker.observe.metrics import RunMetrics

        failed = {f.registry for f in summary.failures}
        for registry in self._registries:
            RunMetrics(registry).finished(ok=registry not in failed)
        if self._args.metrics_file:
            write_textfile(self._args.metrics_file)


def _live_display(registries: list[str]) -> LiveDisplay:
    from syncworker.observe.progress import LiveDisplay  # rich: only for a terminal

    return LiveDisplay(sys.stderr, human_size, registries)


class RepoPrinter:
    """One line per finished repository, numbered, to stderr (grep-able logs); ``as_json``:
    as a JSON log line naming the registry and repository; ``dry_run``: only the
    repositories that failed, since the plan on stdout names every one, with what the plan
    would copy and fetch."""

    def __init__(self, stream: TextIO, *, as_json: bool = False, dry_run: bool = False) -> None:
        self._stream = stream
        self._failures_only = dry_run
        self._copied, self._fetched = ("to copy", " to fetch") if dry_run else ("copied", "")
        self._json = JsonFormatter() if as_json else None
        self._done = 0
        self._lock = threading.Lock()

    def __call__(self, result: RepoResult) -> None:
        with self._lock:
            self._done += 1
            if self._failures_only and not result.failures:
                return
            state = "FAILED" if result.failures else "ok"
            if result.skip_reason is not None:
                state = f"skipped ({result.skip_reason})"
            # Tags the pull budget left for later are named, or a repository with only
            # those would read as mirrored and up to date.
            deferred = f"{len(result.deferred)} deferred, " if result.deferred else ""
            line = (
                f"[{self._done:>5}] {result.registry}/{result.upstream_repo}: {state}, "
                f"{len(result.copied)} {self._copied}, {len(result.skipped)} unchanged, "
                f"{deferred}{human_size(result.bytes_copied)}{self._fetched}"
            )
            if self._json is not None:
                line = self._as_json(result, line)
            print(line, file=self._stream, flush=True)

    def _as_json(self, result: RepoResult, line: str) -> str:
        assert self._json is not None
        level = logging.WARNING if result.failures else logging.INFO
        record = logging.LogRecord(PRINTER_LOGGER, level, __file__, 0, line, None, None)
        bind_context(registry=result.registry, repository=result.upstream_repo)
        try:
            return self._json.format(record)
        finally:
            clear_context()
