"""``syncworker trigger``: start a catalog walk now, or mirror one image on demand.

``trigger -c FILE [--registry NAME] [--wait]`` claims each registry's walk and prints its
run id (if a walk is already in progress, that run's id, and nothing new starts).
``trigger -c FILE --image REPO:TAG|REPO@DIGEST [--registry NAME] [--wait]`` sends
``sync_image`` to the on-demand queue. With ``--wait``: progress on stderr, exit 0 when
everything finished with no failure, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

from syncworker.celeryapp import create_app
from syncworker.cli.status import RUN_STATE, describe, print_failures
from syncworker.cli.units import positive_seconds
from syncworker.cli.workerping import warn_if_none_answers
from syncworker.config import Config, load_config
from syncworker.coord import RUNNING, Coordinator, RunStatus
from syncworker.errors import ConfigError
from syncworker.oci import Reference
from syncworker.runs.catalogwalk import start_walk
from syncworker.runtime import Runtime
from syncworker.worker.send import CeleryWalkQueue, publishing
from syncworker.worker.tasknames import TASK_SYNC_IMAGE

__all__ = ["add_parser", "run"]

# How often --wait reads the run state; progress is printed only when it changes.
POLL_SECONDS = 0.5
EXIT_OK, EXIT_FAILED = 0, 1
# The state of a run whose record is no longer in Redis.
MISSING = "missing"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("trigger", help="start a walk now, or mirror one image")
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON config file")
    parser.add_argument("-r", "--registry", help="registry name (default: all / the only one)")
    parser.add_argument("--image", metavar="REPO:TAG|REPO@DIGEST", help="one image, on demand")
    parser.add_argument("--wait", action="store_true", help="wait until finished")
    parser.add_argument(
        "--timeout", type=positive_seconds, help="give up waiting after this many seconds"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    # An unreachable Redis fails here, before anything is sent.
    with Runtime.open(config, upto="redis", redis=RUN_STATE) as runtime:
        return _trigger(args, config, runtime.coordinator)


def _trigger(args: argparse.Namespace, config: Config, coord: Coordinator) -> int:
    app = create_app(config)
    if args.image:
        return _trigger_image(app, config, args)
    names = [args.registry] if args.registry else [r.name for r in config.registries]
    run_ids = [_trigger_walk(app, coord, config, name) for name in names]
    for run_id in run_ids:
        print(run_id, flush=True)
    if not args.wait:
        return EXIT_OK
    warn_if_none_answers(app, args.config)
    finished = _wait_runs(coord, run_ids, args.timeout)
    return EXIT_OK if all(_succeeded(s) for s in finished) else EXIT_FAILED


def _trigger_walk(app: Celery, coord: Coordinator, config: Config, registry: str) -> str:
    config.registry(registry)  # an unknown name is a ConfigError before anything is sent
    claim = start_walk(coord, CeleryWalkQueue(app, config.syncworker.repos_per_task), registry)
    if claim.started:
        print(f"started walk of {registry}: run {claim.run_id}", file=sys.stderr)
    else:
        print(
            f"a walk of {registry} is already in progress (run {claim.run_id}): "
            "nothing new started",
            file=sys.stderr,
        )
    return claim.run_id


def _wait_runs(coord: Coordinator, run_ids: list[str], timeout: float | None) -> list[RunStatus]:
    deadline = None if timeout is None else time.monotonic() + timeout
    shown: dict[str, str] = {}
    while True:
        statuses = [_run_or_missing(coord, run_id) for run_id in run_ids]
        for status in statuses:
            line = describe(status) if status.state != MISSING else _lost(status.id)
            if shown.get(status.id) != line.split(", elapsed")[0]:
                shown[status.id] = line.split(", elapsed")[0]
                print(line, file=sys.stderr, flush=True)
        if all(s.state != RUNNING for s in statuses):
            for status in statuses:
                print_failures(status, sys.stderr)
            return statuses
        if deadline is not None and time.monotonic() > deadline:
            print("syncworker: gave up waiting (--timeout); the runs go on", file=sys.stderr)
            return statuses
        time.sleep(POLL_SECONDS)


def _run_or_missing(coord: Coordinator, run_id: str) -> RunStatus:
    status = coord.run_status(run_id)
    if status is None:  # expired, or Redis lost it: not a success
        return RunStatus(id=run_id, registry="?", state=MISSING, started=time.time())
    return status


def _lost(run_id: str) -> str:
    return (
        f"run {run_id}: its state is gone from Redis (Redis restarted empty or lost its data,"
        " or the run expired), so it can neither finish nor be swept. What it copied stays in"
        " the store: trigger again (or wait for the next scheduled walk) and the new run"
        " copies only what is missing."
    )


def _succeeded(status: RunStatus) -> bool:
    return (
        status.state == "finished"
        and not status.failures
        and status.counters.get("repos_failed", 0) == 0
    )


def _image_registry(config: Config, name: str | None) -> str:
    if name:
        return config.registry(name).name
    if len(config.registries) == 1:
        return config.registries[0].name
    raise ConfigError("--registry", "several registries are configured: name one")


def _trigger_image(app: Celery, config: Config, args: argparse.Namespace) -> int:
    registry = _image_registry(config, args.registry)
    ref = Reference.parse(args.image)
    with publishing(TASK_SYNC_IMAGE):
        result = app.send_task(TASK_SYNC_IMAGE, args=[registry, ref.repository, ref.ref])
    print(result.id, flush=True)
    print(
        f"sent {registry}/{ref} as task {result.id} (status lists walks, not single images:"
        " --wait waits for this one)",
        file=sys.stderr,
    )
    if not args.wait:
        return EXIT_OK
    warn_if_none_answers(app, args.config)
    try:
        summary = result.get(timeout=args.timeout, propagate=False)
    except CeleryTimeout:
        print("syncworker: gave up waiting (--timeout); the copy goes on", file=sys.stderr)
        return EXIT_FAILED
    if not isinstance(summary, dict):
        print(f"syncworker: sync_image failed: {summary}", file=sys.stderr)
        return EXIT_FAILED
    state = (
        "coalesced with an identical request"
        if summary["coalesced"]
        else (f"{summary['copied']} copied, {summary['skipped']} unchanged")
    )
    print(f"{registry}/{ref}: {state}", file=sys.stderr)
    for failure in summary["failures"]:
        print(f"  FAILED {failure}", file=sys.stderr)
    return EXIT_FAILED if summary["failures"] else EXIT_OK
