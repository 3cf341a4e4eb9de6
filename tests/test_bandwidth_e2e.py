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
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, seeded_upstream, trigger, wait_finished
from tests.support.corpus import Corpus
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.mirror import run_sync, write_sync_config
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.support.sampling import Sampler

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


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RegistryServer, Corpus]]:
    yield from seeded_upstream(REPOS, 1, layers=LAYERS, layer_size=LAYER, shared_layers=REPOS)


def assert_near_cap(sampler: Sampler) -> None:
    sent, rate = sampler.total, sampler.rate()
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
        with Sampler(lambda: proxy.sent, interval=0.1) as sampler:
            run = run_sync(config, "-q")
    assert run.code == 0, run.output[-3000:]
    assert_near_cap(sampler)


def test_three_workers_share_one_cap(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    server, _ = upstream
    redis_server = RedisServer()
    proxy = CountingProxy(server.url)
    cluster = Cluster(tmp_path, server, redis_server.url, upstream_url=proxy.url)
    try:
        cluster.write_config(downloadRate=CAP)
        for index in range(3):
            cluster.worker(f"w{index}")
        with Sampler(lambda: proxy.sent, interval=0.1) as sampler:
            run_id, _ = trigger(cluster)
            status = wait_finished(cluster.coord(), run_id)
    finally:
        cluster.stop_all()
        proxy.close()
        redis_server.close()
    assert (status.state, status.done, status.failures) == ("finished", REPOS, [])
    assert_near_cap(sampler)
