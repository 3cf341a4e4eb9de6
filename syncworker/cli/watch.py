"""``syncworker status --watch``: the cluster as an operator keeps it open, refreshed in
place: per registry its runs (counts, rate, ETA, the last failures with causes) and next
scheduled walk, the workers that answer, and the length of each queue. ``--json``: one
JSON object per refresh."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from io import StringIO
from typing import Any

from syncworker.celeryapp import create_app
from syncworker.cli.runtext import describe, print_failures
from syncworker.cli.workerping import answering
from syncworker.config import Config
from syncworker.coord import RUNNING, Coordinator, RunStatus
from syncworker.worker.schedule import next_run
from syncworker.worker.tasknames import QUEUE_ONDEMAND, QUEUE_REPO, QUEUE_WALK

__all__ = ["ClusterView", "watch"]

QUEUES = (QUEUE_WALK, QUEUE_REPO, QUEUE_ONDEMAND)
# How long workers have to answer a ping: short, since each refresh waits for it.
PING_TIMEOUT = 1.0
# Clear the terminal and home the cursor: each refresh replaces the last.
CLEAR = "\x1b[H\x1b[2J"


def watch(args: argparse.Namespace, config: Config, coord: Coordinator) -> int:
    """Refresh every ``args.watch`` seconds, counted from the start of each read (which
    waits up to PING_TIMEOUT for workers to answer), until interrupted."""
    app = create_app(config)
    try:
        while True:
            started = time.monotonic()
            view = ClusterView.read(app, config, coord, args.limit)
            if args.json:
                print(json.dumps(view.to_dict(), sort_keys=True), flush=True)
            else:
                prefix = CLEAR if sys.stdout.isatty() else "\n"
                print(prefix + view.render(args.failures), end="", flush=True)
            time.sleep(max(0.0, args.watch - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0
    finally:
        app.close()


@dataclass
class ClusterView:
    time: float
    runs: list[RunStatus]
    next_runs: dict[str, float | None]
    workers: list[str]
    queues: dict[str, int]

    @classmethod
    def read(cls, app: Any, config: Config, coord: Coordinator, limit: int) -> ClusterView:
        return cls(
            time=time.time(),
            runs=coord.runs(limit),
            next_runs={r.name: next_run(app, r.name) for r in config.registries},
            workers=sorted(answering(app, PING_TIMEOUT)),
            queues=_queue_lengths(app),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "runs": [r.to_dict() for r in self.runs]}

    def render(self, failures: int) -> str:
        """The text form; ``failures``: repositories with failures listed per run."""
        out = StringIO()
        workers = ", ".join(self.workers) or "none answering"
        print(f"syncworker status at {_clock(self.time)}", file=out)
        print(f"workers: {workers}", file=out)
        print("queues: " + ", ".join(f"{q} {n}" for q, n in self.queues.items()), file=out)
        for registry, due in sorted(self.next_runs.items()):
            print(f"next walk of {registry}: {_clock(due) if due else 'not scheduled'}", file=out)
        for status in self.runs:
            print(describe(status), file=out)
            if status.state == RUNNING or status.failures:
                print_failures(status, out, failures)
        return out.getvalue()


def _clock(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _queue_lengths(app: Any) -> dict[str, int]:
    """Messages waiting in each queue (not those a worker holds), from the broker itself:
    Redis or RabbitMQ alike."""
    lengths = {}
    with app.connection_for_read() as connection:
        channel = connection.channel()
        for queue in QUEUES:
            try:
                lengths[queue] = channel.queue_declare(queue, passive=True).message_count
            except connection.channel_errors:  # not declared yet: nothing waits in it
                lengths[queue] = 0
                channel = connection.channel()  # a failed passive declare closes it (AMQP)
    return lengths
