"""The Prometheus metrics of syncworker, and the :class:`Events` that keeps them.

Named by the Prometheus conventions: the ``syncworker_`` prefix, ``_total`` counters,
``_seconds`` and ``_bytes`` in base units, and bounded labels only (``registry``, ``method``,
``code``, ``outcome``, ``kind``): never a repository or a tag, whose number has no bound.
In a prefork worker these live in prometheus-client's multiprocess mode (see ``serve``).
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from syncworker.engine import RepoResult
from syncworker.engine.events import BlobOutcome, ImageOutcome, WaitKind
from syncworker.registry.stats import RequestHook

__all__ = ["METRICS", "MetricsEvents", "RunMetrics", "ServeMetrics", "markdown_table"]

# Per-blob transfers: a manifest-sized blob in milliseconds up to a multi-GB layer.
BLOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
# Per-repository syncs: a no-op check in tens of milliseconds up to hours for a big one.
REPO_BUCKETS = (0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200)

REQUESTS = Counter(
    "syncworker_upstream_requests_total",
    "Requests to upstream registries, by HTTP method and status code (timeout/error: none)",
    ["registry", "method", "code"],
)
RETRIES = Counter(
    "syncworker_upstream_retries_total", "Requests retried after a temporary failure", ["registry"]
)
THROTTLED = Counter(
    "syncworker_upstream_throttled_total", "429 Too Many Requests answers", ["registry"]
)
WAITED = Counter(
    "syncworker_wait_seconds_total",
    "Time spent waiting: kind=rate_limit (the upstream's request budget), kind=bandwidth "
    "(its download rate cap) or kind=lock (a repository held by another worker)",
    ["registry", "kind"],
)
BLOBS = Counter(
    "syncworker_blobs_total",
    "Blobs made present: outcome=fetched (downloaded and written) or linked (deduplicated)",
    ["registry", "outcome"],
)
BLOB_BYTES = Counter(
    "syncworker_blob_bytes_total", "Bytes of blobs fetched and written", ["registry"]
)
IMAGES = Counter(
    "syncworker_images_total",
    "Images (tags) by outcome: copied, unchanged or failed",
    ["registry", "outcome"],
)
REPOSITORIES = Counter(
    "syncworker_repositories_total",
    "Repositories finished: outcome=ok, failed or skipped (listed without tags)",
    ["registry", "outcome"],
)
REPO_SECONDS = Histogram(
    "syncworker_repository_sync_seconds",
    "Time to sync one repository",
    ["registry"],
    buckets=REPO_BUCKETS,
)
BLOB_SECONDS = Histogram(
    "syncworker_blob_transfer_seconds",
    "Time to fetch and write one blob",
    ["registry"],
    buckets=BLOB_BUCKETS,
)
RUNS_STARTED = Counter("syncworker_runs_started_total", "Runs started", ["registry"])
RUNS_FINISHED = Counter(
    "syncworker_runs_finished_total", "Runs finished: outcome=ok or failed", ["registry", "outcome"]
)
RUNS_IN_PROGRESS = Gauge(
    "syncworker_runs_in_progress",
    "Runs in progress",
    ["registry"],
    multiprocess_mode="livesum",
)
LAST_SUCCESS = Gauge(
    "syncworker_last_successful_run_timestamp_seconds",
    "When the last run without failures finished (Unix time)",
    ["registry"],
    multiprocess_mode="max",
)
PULL_BUDGET = Gauge(
    "syncworker_upstream_pull_budget_remaining",
    "Pulls left of the upstream's budget (Docker Hub's ratelimit-remaining), as its last "
    "answer declared",
    ["registry"],
    multiprocess_mode="mostrecent",
)
SERVED = Counter(
    "syncworker_serve_requests_total",
    "Requests answered by `syncworker serve`, by route (distribution's handler names: base, "
    "catalog, tags, manifest, blob, blob_upload, referrers, unknown), method and status code",
    ["route", "method", "code"],
)
SERVED_BYTES = Counter(
    "syncworker_serve_bytes_total",
    "Bytes of bodies sent by `syncworker serve` (a blob redirected to S3 sends none)",
    ["route"],
)
FILLS = Counter(
    "syncworker_serve_fills_total",
    "On-demand fills of `syncworker serve`: kind=image or referrers, outcome=ok, timeout "
    "(the client was answered 503, the copy goes on), refused (503: too many copies held, "
    "none started) or failed",
    ["kind", "outcome"],
)
#: Every metric, for the generated list in docs/OBSERVABILITY.md.
METRICS = (
    REQUESTS, RETRIES, THROTTLED, WAITED, BLOBS, BLOB_BYTES, IMAGES, REPOSITORIES,
    REPO_SECONDS, BLOB_SECONDS, RUNS_STARTED, RUNS_FINISHED, RUNS_IN_PROGRESS, LAST_SUCCESS,
    PULL_BUDGET, SERVED, SERVED_BYTES, FILLS,
)  # fmt: skip


class _UpstreamHook:
    """The per-response hook of one registry's transport."""

    def __init__(self, registry: str) -> None:
        self._registry = registry
        self._retries = RETRIES.labels(registry)
        self._throttled = THROTTLED.labels(registry)
        self._waited = WAITED.labels(registry, "rate_limit")
        self._capped = WAITED.labels(registry, "bandwidth")
        self._budget = PULL_BUDGET.labels(registry)

    def response(self, method: str, code: str) -> None:
        REQUESTS.labels(self._registry, method, code).inc()
        if code == "429":
            self._throttled.inc()

    def retried(self) -> None:
        self._retries.inc()

    def waited(self, seconds: float) -> None:
        self._waited.inc(seconds)

    def capped(self, seconds: float) -> None:
        self._capped.inc(seconds)

    def pull_budget(self, remaining: int) -> None:
        self._budget.set(remaining)


class MetricsEvents:
    """Keeps the metrics from the engine's events."""

    def requests(self, registry: str) -> RequestHook | None:
        return _UpstreamHook(registry)

    def repo_started(self, registry: str, repo: str) -> None:
        pass

    def repo_done(self, result: RepoResult, seconds: float) -> None:
        registry = result.registry
        outcome = "failed" if not result.ok else "ok" if result.skip_reason is None else "skipped"
        REPOSITORIES.labels(registry, outcome).inc()
        REPO_SECONDS.labels(registry).observe(seconds)

    def image_done(self, registry: str, repo: str, outcome: ImageOutcome, size: int) -> None:
        IMAGES.labels(registry, outcome).inc()

    def blob_done(self, registry: str, outcome: BlobOutcome, size: int, seconds: float) -> None:
        BLOBS.labels(registry, outcome).inc()
        if outcome == "fetched":
            BLOB_BYTES.labels(registry).inc(size)
            BLOB_SECONDS.labels(registry).observe(seconds)

    def waited(self, registry: str, kind: WaitKind, seconds: float) -> None:
        WAITED.labels(registry, kind).inc(seconds)

    def repos_listed(self, registry: str, count: int, complete: bool) -> None:
        pass


class RunMetrics:
    """A run's start and end, for one registry."""

    def __init__(self, registry: str) -> None:
        self._registry = registry

    def started(self) -> None:
        RUNS_STARTED.labels(self._registry).inc()
        RUNS_IN_PROGRESS.labels(self._registry).inc()

    def finished(self, ok: bool) -> None:
        RUNS_IN_PROGRESS.labels(self._registry).dec()
        RUNS_FINISHED.labels(self._registry, "ok" if ok else "failed").inc()
        if ok:
            LAST_SUCCESS.labels(self._registry).set(time.time())


class ServeMetrics:
    """What ``syncworker serve`` answered, and its on-demand fills."""

    def answered(self, route: str, method: str, code: int, sent: int) -> None:
        SERVED.labels(route, method, str(code)).inc()
        if sent:
            SERVED_BYTES.labels(route).inc(sent)

    def filled(self, kind: str, outcome: str) -> None:
        FILLS.labels(kind, outcome).inc()


def _exposed(metric: MetricWrapperBase) -> str:
    """The name a scrape shows: a counter's with its ``_total``."""
    return str(metric._name) + ("_total" if metric._type == "counter" else "")


def markdown_table() -> str:
    """docs/OBSERVABILITY.md's list of metrics: ``python -m syncworker.observe.metrics``."""
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for m in METRICS:
        labels = ", ".join(f"`{label}`" for label in m._labelnames)
        rows.append(f"| `{_exposed(m)}` | {m._type} | {labels} | {m._documentation} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
