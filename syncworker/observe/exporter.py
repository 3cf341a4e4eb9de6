"""Serving the metrics: a worker's prefork children summed over HTTP, or one process's own
(``syncworker sync``) over HTTP and/or into a node_exporter textfile.

A prefork worker's children each write their samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode), and the parent serves
their sum. prometheus-client picks that mode when it is first imported, so
:func:`enable_multiprocess` runs before anything imports it; this module imports it only
inside its functions for that reason.
"""

from __future__ import annotations

import glob
import logging
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from syncworker.coord import RUNNING, RunStatus, RunTotals
from syncworker.engine import Events
from syncworker.observe.fanout import Fanout
from syncworker.observe.live import LiveCounts

if TYPE_CHECKING:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.metrics import MetricWrapperBase
    from prometheus_client.metrics_core import Metric

    FamilyT = TypeVar("FamilyT", CounterMetricFamily, GaugeMetricFamily)

__all__ = [
    "MULTIPROC_ENV",
    "ClusterRuns",
    "WorkersCollector",
    "enable_multiprocess",
    "serve_own",
    "serve_workers",
    "worker_events",
    "write_textfile",
]

log = logging.getLogger(__name__)

#: prometheus-client's own variable: where each process of a worker writes its samples.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The address metrics are served on; all interfaces, as a scraper runs elsewhere.
LISTEN = "0.0.0.0"
#: Recent runs read from Redis per scrape, for the runs in progress.
RECENT_RUNS = 50


class ClusterRuns(Protocol):
    """The cluster's runs as Redis keeps them: a Coordinator."""

    def runs(self, limit: int = ...) -> list[RunStatus]:
        """Recent runs, newest first."""
        ...

    def run_totals(self) -> dict[str, RunTotals]:
        """Runs started and finished per registry, and each one's last success."""
        ...


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


def serve_workers(port: int, runs: ClusterRuns) -> None:
    """Serve the sum of every process of this worker on ``port``, and the runs metrics of
    the cluster read from Redis at each scrape."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(WorkersCollector(os.environ[MULTIPROC_ENV]))
    registry.register(_RunsCollector(runs))
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


class WorkersCollector:
    """The sum of the samples the worker's processes write into ``directory``.

    A child creates its file for a kind of metric (``counter_<pid>.db``,
    ``gauge_mostrecent_<pid>.db``...) when it first uses one, and sizes it after creating it:
    a scrape at that moment reads an empty file, which prometheus-client's own collector
    fails on (``struct.error``), answering the whole scrape 500. A file that cannot be read
    yet holds no sample, so it is left out of that scrape (and logged); the rest is served.
    """

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.mmap_dict import MmapedDict
        from prometheus_client.multiprocess import MultiProcessCollector

        readable = []
        for path in sorted(glob.glob(os.path.join(self._directory, "*.db"))):
            try:
                list(MmapedDict.read_all_values_from_file(path))  # type: ignore[no-untyped-call]
            except (OSError, RuntimeError, UnicodeDecodeError, struct.error) as exc:
                log.warning("metrics: %s left out of this scrape, unreadable: %r", path, exc)
                continue
            readable.append(path)
        merged = MultiProcessCollector.merge(readable)  # type: ignore[no-untyped-call]
        yield from merged


class _RunsCollector:
    """The runs metrics of the whole cluster, from Redis: runs started and finished per
    registry and its last success (counted once, by the script that starts or ends each
    run, whichever worker runs it), and the runs in progress. Every worker serves the same
    values: aggregate them with ``max``, not ``sum``."""

    def __init__(self, runs: ClusterRuns) -> None:
        self._runs = runs

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from syncworker.observe import metrics

        started = _family(CounterMetricFamily, metrics.RUNS_STARTED)
        finished = _family(CounterMetricFamily, metrics.RUNS_FINISHED)
        last = _family(GaugeMetricFamily, metrics.LAST_SUCCESS)
        running = _family(GaugeMetricFamily, metrics.RUNS_IN_PROGRESS)
        for registry, totals in self._runs.run_totals().items():
            started.add_metric([registry], totals.started)
            finished.add_metric([registry, "ok"], totals.finished_ok)
            finished.add_metric([registry, "failed"], totals.finished_failed)
            if totals.last_ok is not None:
                last.add_metric([registry], totals.last_ok)
        in_progress: dict[str, int] = {}
        for run in self._runs.runs(RECENT_RUNS):
            in_progress[run.registry] = in_progress.get(run.registry, 0) + (run.state == RUNNING)
        for registry, count in sorted(in_progress.items()):
            running.add_metric([registry], count)
        yield from (started, finished, last, running)


def _family(kind: type[FamilyT], metric: MetricWrapperBase) -> FamilyT:
    """An empty family named, described and labelled as ``metric`` (metrics.py's list)."""
    return kind(metric._name, metric._documentation, labels=list(metric._labelnames))
