"""Rows for the lean-engine targets: start-up, a 1,000-tag no-op at +20 ms, and the small
set with the upstream registry pinned to one core and everything else to the other."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.proc import Finished, run_measured
from bench.scenarios import Bench
from bench.seed import DataSet, push_one_image
from bench.tools import write_sync_config
from syncworker.engine.repo import DEFAULT_TAG_CONCURRENCY
from tests.support.push import push_manifest
from tests.support.registry_server import RegistryServer

__all__ = ["MANY_TAGS", "MANY_TAGS_LATENCY_MS", "many_tags", "pinned", "startup"]

MANY_TAGS = 1000
MANY_TAGS_LATENCY_MS = 20
REGISTRY_CPU, MIRROR_CPU = 0, 1  # the cores of the pinned rows


def startup(bench: Bench) -> None:
    """A bare interpreter, and a no-op `syncworker sync` of one repository with one tag."""
    upstream = bench.registry()
    data = DataSet("one")
    push_one_image(upstream, data, "one/repo", ["latest"])
    bench.measure("startup.python", "bare `python -c pass`", data, upstream, _bare_python)
    root = bench.workdir / "store-one"
    config = write_sync_config(bench.workdir / "sync-one.yaml", upstream.url, root)
    bench._sync(config, "one-cold")
    bench.measure(
        "one.sync.noop",
        "syncworker sync (no-op), 1 repository, 1 tag",
        data,
        upstream,
        lambda rep: bench._sync(config, f"one-noop-{rep}"),
    )


def _bare_python(_: int) -> Finished:
    return run_measured([sys.executable, "-c", "pass"], timeout=60)


def many_tags(bench: Bench) -> None:
    """A no-op of one repository with MANY_TAGS tags (one image), every request delayed."""
    upstream = bench.registry()
    data = DataSet(f"tags{MANY_TAGS}")
    image = push_one_image(upstream, data, "many/tags", ["t0"])
    for number in range(1, MANY_TAGS):
        push_manifest(upstream.url, "many/tags", f"t{number}", image.raw, image.media_type)
        data.tags["many/tags"].append(f"t{number}")
    root = bench.workdir / "store-many"
    ms = MANY_TAGS_LATENCY_MS
    with bench._upstream_url(upstream, ms) as url:
        # The default tagConcurrency (the target's row), then twice as many tags at once.
        for tags_at_once in (DEFAULT_TAG_CONCURRENCY, 2 * DEFAULT_TAG_CONCURRENCY):
            suffix = "" if tags_at_once == DEFAULT_TAG_CONCURRENCY else f".tags{tags_at_once}"
            config = write_sync_config(
                bench.workdir / f"sync-many{suffix}.yaml", url, root, tag_concurrency=tags_at_once
            )
            bench._sync(config, f"many-cold{suffix}")
            bench.measure(
                f"tags{MANY_TAGS}.sync.noop.{ms}ms{suffix}",
                f"syncworker sync (no-op), 1 repository, {MANY_TAGS} tags, +{ms} ms/request, "
                f"tagConcurrency {tags_at_once}",
                data,
                upstream,
                lambda rep, config=config, suffix=suffix: bench._sync(
                    config, f"many-noop{suffix}-{rep}"
                ),
                latency_ms=ms,
            )


def pinned(bench: Bench, data: DataSet, upstream: RegistryServer) -> None:
    """The read limits and a cold `syncworker sync` with the upstream registry on one core
    and the bench (so the readers and the measured processes) on the other."""
    if (os.cpu_count() or 1) < 2:
        return
    with _pinned(upstream):
        bench.read_limit(data, upstream, suffix=".pinned")
        root = bench.workdir / f"store-{data.name}-pinned"
        config = write_sync_config(bench.workdir / "sync-pinned.yaml", upstream.url, root)

        def cold(rep: int) -> Any:
            bench._fresh(root.name)
            return bench._sync(config, f"{data.name}-pinned-{rep}")

        bench.measure(
            f"{data.name}.sync.cold.pinned",
            "syncworker sync (cold), registry pinned to core 0, mirror to core 1",
            data,
            upstream,
            cold,
        )


@contextmanager
def _pinned(upstream: RegistryServer) -> Iterator[None]:
    """Threads and processes started inside inherit this thread's affinity."""
    proc: subprocess.Popen[bytes] = upstream._proc  # type: ignore[assignment]
    before_registry, before_self = os.sched_getaffinity(proc.pid), os.sched_getaffinity(0)
    os.sched_setaffinity(proc.pid, {REGISTRY_CPU})
    for task in os.listdir(f"/proc/{proc.pid}/task"):  # the Go runtime's threads
        os.sched_setaffinity(int(task), {REGISTRY_CPU})
    os.sched_setaffinity(0, {MIRROR_CPU})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before_self)
        for task in os.listdir(f"/proc/{proc.pid}/task"):
            os.sched_setaffinity(int(task), before_registry)
