"""The measurements, each repeated `reps` times against a seeded upstream registry."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis

from bench.metrics import TrafficMeter
from bench.proxy import DelayProxy
from bench.readlimit import read_with_curl, read_with_requests
from bench.results import Measurement, Sample
from bench.seed import DataSet, push_new_tags
from bench.tools import (
    CeleryWorkers,
    check_ok,
    run_skopeo,
    run_sync,
    write_skopeo_source,
    write_sync_config,
)
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

__all__ = ["Bench", "WORKER_COUNTS", "WORKER_LATENCIES_MS"]

WORKER_COUNTS = (1, 2, 4)
WORKER_LATENCIES_MS = (0, 20)


class _Timed(Protocol):
    @property
    def wall(self) -> float: ...


@dataclass(frozen=True)
class _Read:
    wall: float
    peak_rss: int
    cpu: float


class Bench:
    """Runs measurements into `self.measurements`; every server it starts stops on close()."""

    def __init__(self, workdir: Path, reps: int, log: Callable[[str], None]) -> None:
        self.workdir, self.reps, self.log = workdir, reps, log
        self.measurements: list[Measurement] = []
        self.stack = ExitStack()
        self._trash = workdir / "trash"
        shutil.rmtree(self._trash, ignore_errors=True)
        self.stack.callback(shutil.rmtree, self._trash, ignore_errors=True)

    def close(self) -> None:
        self.stack.close()

    def registry(self) -> RegistryServer:
        """A registry on tmpfs when there is one (see RegistryServer): the upstream stands for
        the network, and is not what is measured. Destinations are under `workdir`."""
        server = RegistryServer()
        self.stack.callback(server.stop)
        return server

    def _fresh(self, name: str) -> Path:
        path = self.workdir / name
        self._discard(path)
        path.mkdir(parents=True)
        return path

    def _discard(self, path: Path) -> None:
        """Moved out of the way now, deleted when the bench ends: deleting a thousand files
        just before a measured run makes that run pay the file system's deferred work (ext4
        charged up to 45% of a cold run's CPU samples to it)."""
        if path.exists():
            self._trash.mkdir(parents=True, exist_ok=True)
            path.rename(self._trash / f"{sum(1 for _ in self._trash.iterdir())}-{path.name}")

    def measure(
        self,
        key: str,
        label: str,
        data: DataSet,
        upstream: RegistryServer,
        action: Callable[[int], Any],
        *,
        prepare: Callable[[int], object] | None = None,
        **params: Any,
    ) -> Measurement:
        """Repeat `action(rep)` (returns .wall, .peak_rss, maybe .cpu), metering the upstream.
        `prepare(rep)` runs first, outside the meter and the clock."""
        result = Measurement(key, label, len(data.blobs), data.unique_bytes, data.tag_count)
        result.params.update(params)
        for rep in range(self.reps):
            if prepare:
                prepare(rep)
            # Nothing dirty from earlier runs: syncworker's syncfs would write it back and be
            # charged for it, while a tool that never syncs is not.
            os.sync()
            with TrafficMeter(upstream) as meter:
                done = action(rep)
            sample = Sample(
                done.wall, done.peak_rss, meter.traffic, getattr(done, "cpu", None),
                os.getloadavg()[0],
            )  # fmt: skip
            result.samples.append(sample)
            self.log(
                f"{key} #{rep + 1}: {done.wall:.2f}s, {meter.traffic.requests} requests, "
                f"{meter.traffic.blob_gets} blob GETs, {done.peak_rss / 2**20:.0f} MiB RSS"
            )
        self.measurements.append(result)
        return result

    # -- read limit --------------------------------------------------------------------------

    def read_limit(self, data: DataSet, upstream: RegistryServer, suffix: str = "") -> None:
        def python(_: int) -> _Read:
            done = read_with_requests(upstream.url, data)
            return _Read(done.wall, 0, done.cpu)

        def curl(_: int) -> _Read:
            done = read_with_curl(upstream.url, data, self.workdir)
            return _Read(done.wall, 0, done.cpu)

        def copier(_: int) -> _Read:
            into = self._fresh(f"copy-{data.name}")
            done = read_with_requests(upstream.url, data, into=into)
            self._discard(into)
            return _Read(done.wall, 0, done.cpu)

        name = data.name
        self.measure(
            f"{name}.read.requests{suffix}", "read limit (requests, 8 threads)", data, upstream,
            python,
        )  # fmt: skip
        if not suffix:
            self.measure(
                f"{name}.read.copy", "plain copier (requests, 8 threads, sha256, a file per blob)",
                data, upstream, copier,
            )  # fmt: skip
        self.measure(
            f"{name}.read.curl{suffix}", "read limit (curl --parallel 8)", data, upstream, curl
        )

    # -- skopeo ------------------------------------------------------------------------------

    def skopeo(self, data: DataSet, upstream: RegistryServer) -> None:
        name = data.name
        source = write_skopeo_source(self.workdir / f"skopeo-{name}.yaml", upstream.host, data)

        def to_dir(rep: int) -> Any:
            dest = self._fresh(f"skopeo-dir-{name}")
            done = run_skopeo(
                source, "dir", str(dest), self.workdir / f"skopeo-dir-{name}-{rep}.log"
            )
            check_ok(done, "skopeo sync to dir")
            self._discard(dest)
            return done

        self.measure(f"{name}.skopeo.dir", "skopeo sync → dir (cold)", data, upstream, to_dir)
        targets: list[RegistryServer] = []

        def to_registry(rep: int) -> Any:
            for old in targets:
                old.stop()  # keep only the newest destination (disk)
            targets.append(self.registry())
            return self._skopeo_docker(source, targets[-1], f"{name}-cold-{rep}")

        self.measure(
            f"{name}.skopeo.cold", "skopeo sync → registry (cold)", data, upstream, to_registry
        )

        def noop(rep: int) -> Any:
            return self._skopeo_docker(source, targets[-1], f"{name}-noop-{rep}")

        self.measure(f"{name}.skopeo.noop", "skopeo sync → registry (no-op)", data, upstream, noop)

    def _skopeo_docker(self, source: Path, dest: RegistryServer, tag: str) -> Any:
        done = run_skopeo(source, "docker", dest.host, self.workdir / f"skopeo-docker-{tag}.log")
        check_ok(done, "skopeo sync to registry")
        return done

    # -- syncworker sync (embedded) -----------------------------------------------------------

    def sync(self, data: DataSet, upstream: RegistryServer, *, noop: bool = True) -> Path:
        """Cold runs into fresh stores, then no-op runs on the last store; returns that store."""
        name = data.name
        root = self.workdir / f"store-{name}"
        config = write_sync_config(self.workdir / f"sync-{name}.yaml", upstream.url, root)

        def cold(rep: int) -> Any:
            self._fresh(root.name)
            return self._sync(config, f"{name}-cold-{rep}")

        self.measure(f"{name}.sync.cold", "syncworker sync (cold)", data, upstream, cold)
        if noop:
            self.measure(
                f"{name}.sync.noop",
                "syncworker sync (no-op)",
                data,
                upstream,
                lambda rep: self._sync(config, f"{name}-noop-{rep}"),
            )
        return config

    def sync_to_registry(self, data: DataSet, upstream: RegistryServer) -> None:
        """`syncworker sync` into a registry: cold runs into fresh destination registries
        (on tmpfs, as skopeo's), then no-op runs on the last one."""
        name = data.name
        targets: list[RegistryServer] = []

        def config() -> Path:
            path = self.workdir / f"sync-registry-{name}.yaml"
            unused = self.workdir / f"store-{name}-unused"
            return write_sync_config(path, upstream.url, unused, destination=targets[-1].url)

        def cold(rep: int) -> Any:
            for old in targets:
                old.stop()  # keep only the newest destination
            targets.append(self.registry())
            return self._sync(config(), f"{name}-registry-cold-{rep}")

        self.measure(
            f"{name}.registry.cold", "syncworker sync → registry (cold)", data, upstream, cold
        )
        self.measure(
            f"{name}.registry.noop",
            "syncworker sync → registry (no-op)",
            data,
            upstream,
            lambda rep: self._sync(config(), f"{name}-registry-noop-{rep}"),
        )

    def _sync(self, config: Path, tag: str) -> Any:
        done = run_sync(config, self.workdir / f"sync-{tag}.log")
        check_ok(done, "syncworker sync")
        return done

    def incremental(self, data: DataSet, upstream: RegistryServer, config: Path) -> None:
        """Before each run (unmetered), one new tag per repository; runs on the cold store."""
        added: list[DataSet] = []
        result = self.measure(
            f"{data.name}.sync.incremental",
            "syncworker sync (incremental: +1 tag/repo)",
            data,
            upstream,
            lambda rep: self._sync(config, f"{data.name}-inc-{rep}"),
            prepare=lambda rep: added.append(push_new_tags(upstream, data, rep)),
        )
        # What each run had to fetch: the newly pushed tags, not the whole data set (random
        # layers compress to slightly different sizes, so each round has its own figures).
        result.unique_blobs = len(added[-1].blobs)
        result.unique_bytes = added[-1].unique_bytes
        result.tags = added[-1].tag_count
        result.params["expected"] = [[len(a.blobs), a.unique_bytes] for a in added]

    # -- Celery workers ----------------------------------------------------------------------

    def workers(self, data: DataSet, upstream: RegistryServer) -> None:
        """Cold runs with 1, 2, 4 workers, direct and through a delaying proxy."""
        server = RedisServer()
        self.stack.callback(server.close)
        for latency_ms in WORKER_LATENCIES_MS:
            for count in WORKER_COUNTS:
                self._workers_case(data, upstream, server, count, latency_ms)
        self._sync_with_latency(data, upstream, max(WORKER_LATENCIES_MS))

    def _sync_with_latency(self, data: DataSet, upstream: RegistryServer, ms: int) -> None:
        """The embedded engine through the same proxy: its threads against the workers."""
        root = self.workdir / f"store-{data.name}-{ms}ms"

        def cold(rep: int) -> Any:
            with self._upstream_url(upstream, ms) as url:
                config = write_sync_config(self.workdir / f"sync-{ms}ms.yaml", url, root)
                return self._sync(config, f"{data.name}-{ms}ms-{rep}")

        self.measure(
            f"{data.name}.sync.cold.{ms}ms",
            f"syncworker sync (cold), +{ms} ms/request",
            data,
            upstream,
            cold,
            prepare=lambda rep: self._fresh(root.name),
            latency_ms=ms,
        )

    def _workers_case(
        self, data: DataSet, upstream: RegistryServer, server: RedisServer, count: int, ms: int
    ) -> None:
        name = data.name
        root = self.workdir / f"store-{name}-workers"
        logs = self._fresh(f"workers-{count}-{ms}ms")

        def prepare(rep: int) -> None:
            self._fresh(root.name)
            redis.Redis.from_url(server.url).flushall()

        def cold(rep: int) -> Any:
            with self._upstream_url(upstream, ms) as url:
                config = write_sync_config(logs / "config.yaml", url, root, redis_url=server.url)
                with CeleryWorkers(config, count, logs) as workers:
                    done = workers.trigger(logs / f"trigger-{rep}.log")
            check_ok(done, f"trigger with {count} workers")
            return done

        self.measure(
            f"{name}.workers.{count}.{ms}ms",
            f"{count} Celery worker{'s' if count > 1 else ''}, +{ms} ms/request (cold)",
            data,
            upstream,
            cold,
            prepare=prepare,
            workers=count,
            latency_ms=ms,
        )

    @contextmanager
    def _upstream_url(self, upstream: RegistryServer, ms: int) -> Iterator[str]:
        if not ms:
            yield upstream.url
            return
        with DelayProxy(upstream.port, ms / 1000) as proxy:
            yield proxy.url

    # -- one 1 GiB blob ----------------------------------------------------------------------

    def huge(self, data: DataSet, upstream: RegistryServer) -> None:
        """Peak RSS of `syncworker sync` copying one image with a single 1 GiB layer."""
        self.sync(data, upstream, noop=False)
        self._discard(self.workdir / f"store-{data.name}")
