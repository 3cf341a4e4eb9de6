"""``downloadRate`` end to end, measured at the upstream's side: a counting proxy in front
of the registry counts the body bytes it has handed to the socket, sampled while
``syncworker sync`` (4 threads) or three Celery workers mirror through it; the rate from
its first byte to the run's end stays within 15 % of the cap. The run's rate is
the bytes over the time from the first byte sent to the run's end. (The registry's own
``registry_http_response_size_bytes_sum`` counts a blob whole as its ``sendfile`` starts,
so it cannot show a rate.) Nothing here asserts on how long a run took, only on what the
upstream side sent per second."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.cluster import trigger, wait_finished
from tests.support.corpus import Corpus, seed_many
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.mirror import run_sync, write_sync_config
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.test_rate_e2e import RateCluster

pytestmark = pytest.mark.slow

CAP = 2 * 1024**2
REPOS = 4
LAYERS = 4
# Each image: a 1 MiB layer of a pool and three of its own; 16 MiB in all, about 8 s at
# the cap, long against what the sockets' buffers hold ahead of the reader.
LAYER = 1024**2
TOLERANCE = 0.15
# What the proxy's kernel may hold for one client beyond what it has counted: a send
# buffer this small, as a line's own would be, so its count follows what the client reads.
PROXY_SEND_BUFFER = 64 * 1024
PIECE = 16 * 1024


class CountingProxy(FaultProxy):
    """Forwards everything unchanged, counting the body bytes written to its clients."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.sent = 0

    def track(self, sock: socket.socket, add: bool) -> None:
        if add:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PROXY_SEND_BUFFER)
        super().track(sock, add)

    def send_body(
        self,
        path: str,
        source: io.BufferedIOBase,
        sink: io.BufferedIOBase,
        fault: Fault | None,
        length: int,
    ) -> bool:
        while length > 0 and (chunk := source.read(min(PIECE, length))):
            sink.write(chunk)
            sink.flush()
            length -= len(chunk)
            with self._lock:
                self.sent += len(chunk)
        return True


@dataclass
class ByteSampler:
    """A byte count every 0.1 s: ``(monotonic time, total)``."""

    count: Callable[[], int]
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> ByteSampler:
        self._take()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._take()

    def _take(self) -> None:
        self.samples.append((time.monotonic(), self.count()))

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._take()

    def rate(self) -> tuple[int, float]:
        """The bytes sent, and their rate over the run: from the last sample before the
        first byte to the end of the run (the last sample, taken once the run is over;
        the sockets' buffers hold the last bytes sent for a while before they are read)."""
        first, last = self.samples[0][1], self.samples[-1][1]
        began = max(t for t, n in self.samples if n == first)
        return last - first, (last - first) / (self.samples[-1][0] - began)


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RegistryServer, Corpus]]:
    server = RegistryServer()
    try:
        yield (
            server,
            seed_many(
                server, repos=REPOS, tags=1, layers=LAYERS, layer_size=LAYER, shared_layers=REPOS
            ),
        )
    finally:
        server.stop()


def assert_near_cap(sampler: ByteSampler) -> None:
    sent, rate = sampler.rate()
    print(f"\n[bandwidth] {sent} bytes at {rate / 1024**2:.3f} MiB/s (cap {CAP / 1024**2} MiB/s)")
    assert sent >= REPOS * LAYERS * LAYER
    assert abs(rate - CAP) <= TOLERANCE * CAP, (rate, CAP)


def test_one_process_reads_at_the_cap(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    server, _ = upstream
    with CountingProxy(server.url) as proxy:
        config = write_sync_config(
            tmp_path, tmp_path / "store", [{"urls": [proxy.url], "downloadRate": "2MiB"}],
            settings={"concurrency": 4},
        )  # fmt: skip
        with ByteSampler(lambda: proxy.sent) as sampler:
            run = run_sync(config, "-q")
    assert run.code == 0, run.output[-3000:]
    assert_near_cap(sampler)


def test_three_workers_share_one_cap(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    server, _ = upstream
    redis_server = RedisServer()
    proxy = CountingProxy(server.url)
    cluster = RateCluster(tmp_path, server, redis_server.url, upstream_url=proxy.url)
    try:
        cluster.write_config(downloadRate=CAP)
        for index in range(3):
            cluster.worker(f"w{index}")
        with ByteSampler(lambda: proxy.sent) as sampler:
            run_id, _ = trigger(cluster)
            status = wait_finished(cluster.coord(), run_id)
    finally:
        cluster.stop_all()
        proxy.close()
        redis_server.close()
    assert (status.state, status.done, status.failures) == ("finished", REPOS, [])
    assert_near_cap(sampler)
