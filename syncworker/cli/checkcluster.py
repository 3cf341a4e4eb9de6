"""``syncworker check`` through the workers: a ``check_repo`` task per repository of the
store, counted into a run (``syncworker status`` shows it), then its results printed as
the run keeps them: one line per tree still broken, per repair that failed."""

from __future__ import annotations

import argparse
import sys
import time

from syncworker.celeryapp import create_app
from syncworker.cli.runtext import describe
from syncworker.cli.units import REPOSITORIES, counted
from syncworker.cli.workerping import warn_if_none_answers
from syncworker.config import Config
from syncworker.coord import RUNNING, Coordinator, RunStatus
from syncworker.coord.keys import MAX_FAILURES
from syncworker.engine.checkrun import store_repos
from syncworker.errors import CoordError
from syncworker.runs.storecheck import failure_line
from syncworker.runtime import Runtime
from syncworker.worker.checks import start_check

__all__ = ["check_on_workers"]

# How often the run is read while waiting; progress is printed only when it changes.
POLL_SECONDS = 0.5


def check_on_workers(args: argparse.Namespace, config: Config, registries: list[str] | None) -> int:
    """Fan the check out, wait for its run, print what it found; 0 when all is whole."""
    # An unreachable Redis fails here, before anything is sent.
    with Runtime.open(config, redis="a check by the workers") as runtime:
        repos = store_repos(runtime.mirror, registries)
        return _check(args, runtime, repos)


def _check(args: argparse.Namespace, runtime: Runtime, repos: list[str]) -> int:
    coord = runtime.coordinator
    app = create_app(runtime.config)
    run_id = start_check(app, coord, repos, deep=args.deep, repair=args.repair)
    print(
        f"check run {run_id}: {counted(len(repos), *REPOSITORIES)} sent to the workers"
        f" (`syncworker status {run_id}` shows it)",
        file=sys.stderr,
        flush=True,
    )
    warn_if_none_answers(app, args.config, instead="`check --local` to check in this process")
    status = _wait(coord, run_id, quiet=args.quiet)
    for failure in status.failures:
        print(failure_line(failure))
    if len(status.failures) >= MAX_FAILURES:
        print(f"... the run keeps the first {MAX_FAILURES} lines; check fewer repositories (-r)")
    print(f"check: {describe(status)}")
    ok = (
        status.state == "finished"
        and not status.failures
        and status.counters.get("repos_failed", 0) == 0
    )
    return 0 if ok else 1


def _wait(coord: Coordinator, run_id: str, *, quiet: bool) -> RunStatus:
    shown = ""
    while True:
        status = coord.run_status(run_id)
        if status is None:
            raise CoordError(
                f"check run {run_id}: its state is gone from Redis (restarted empty, or"
                " expired); run the check again"
            )
        line = describe(status).split(", elapsed")[0]
        if line != shown and not quiet:
            shown = line
            print(describe(status), file=sys.stderr, flush=True)
        if status.state != RUNNING:
            return status
        time.sleep(POLL_SECONDS)
