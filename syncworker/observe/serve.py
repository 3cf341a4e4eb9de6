"""Serving the metrics: a worker's prefork children summed over HTTP, or one process's own
(``syncworker sync``) over HTTP and/or into a node_exporter textfile.

A prefork worker's children each write their samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode), and the parent serves
their sum. prometheus-client picks that mode when it is first imported, so
:func:`enable_multiprocess` runs before anything imports it; this module imports it only
inside its functions for that reason.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from syncworker.coord import FINISHED, RUNNING, RunStatus
from syncworker.engine import Events
from syncworker.observe.fanout import Fanout
from syncworker.observe.live import LiveCounts

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = [
    "MULTIPROC_ENV",
    "RecentRuns",
    "enable_multiprocess",
    "serve_own",
    "serve_workers",
    "worker_events",
    "write_textfile",
]

#: prometheus-client's own variable: where each process of a worker writes its samples.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The address metrics are served on; all interfaces, as a scraper runs elsewhere.
LISTEN = "0.0.0.0"
#: Recent runs read from Redis per scrape, for the runs gauges of a worker.
RECENT_RUNS = 50

#: Recent runs of the cluster, newest first (a Coordinator's ``runs``).
RecentRuns = Callable[[int], list[RunStatus]]


def enable_multiprocess() -> str:
    """Put this process and the children it forks in multiprocess mode; the directory
    (``PROMETHEUS_MULTIPROC_DIR`` if set, else a fresh one) is emptied of an earlier
    worker's samples, which would otherwise be summed in."""
    directory = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="syncworker-metrics-")
    os.makedirs(directory, exist_ok=True)
    for stale in Path(directory).glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = directory
    return directory


def worker_events(live: LiveCounts) -> Events:
    """The events of a worker process: its runs' live counts, and metrics when its parent
    serves them."""
    if not os.environ.get(MULTIPROC_ENV):
        return live
    from syncworker.observe.metrics import MetricsEvents

    return Fanout([MetricsEvents(), live])


def serve_workers(port: int, recent_runs: RecentRuns) -> None:
    """Serve the sum of every process of this worker on ``port``, and the runs gauges of the
    cluster read from Redis at each scrape."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(_RunsCollector(recent_runs))
    start_http_server(port, LISTEN, registry)


def serve_own(port: int) -> None:
    """Serve this process's metrics on ``port`` (a background thread)."""
    from prometheus_client import start_http_server

    start_http_server(port, LISTEN)


def write_textfile(path: str) -> None:
    """This process's metrics into ``path`` for node_exporter's textfile collector (written
    to a temporary file and renamed, so the collector never reads half of it)."""
    from prometheus_client import REGISTRY, write_to_textfile

    write_to_textfile(path, REGISTRY)


class _RunsCollector:
    """``syncworker_runs_in_progress`` and the last successful run per registry, from the
    runs Redis keeps for the whole cluster."""

    def __init__(self, recent_runs: RecentRuns) -> None:
        self._recent_runs = recent_runs

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        running = GaugeMetricFamily(
            "syncworker_runs_in_progress", "Runs in progress", labels=["registry"]
        )
        last = GaugeMetricFamily(
            "syncworker_last_successful_run_timestamp_seconds",
            "When the last run without failures finished (Unix time)",
            labels=["registry"],
        )
        in_progress: dict[str, int] = {}
        succeeded: dict[str, float] = {}
        for run in self._recent_runs(RECENT_RUNS):
            in_progress[run.registry] = in_progress.get(run.registry, 0) + (run.state == RUNNING)
            if run.state == FINISHED and not run.failures and run.finished is not None:
                succeeded[run.registry] = max(succeeded.get(run.registry, 0.0), run.finished)
        for registry, count in sorted(in_progress.items()):
            running.add_metric([registry], count)
        for registry, when in sorted(succeeded.items()):
            last.add_metric([registry], when)
        yield running
        yield last
