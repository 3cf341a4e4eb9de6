"""One rate budget per upstream, end to end: the real registry's own request counters,
sampled every second, while `syncworker sync` (4 threads) or 4 Celery workers mirror it
with ``reqPerSec: 20``; 4 workers with ``reqConcurrent: 2`` never have more than two blob
downloads open at the upstream; and a 429 with ``Retry-After: 3`` seen by one worker stops
every worker's requests, as the upstream's own clock sees them.

Nothing here asserts on how long a run took: only on what the upstream saw.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncworker.coord import RunStatus
from tests.support.cluster import Cluster, seeded_upstream, trigger, wait_finished
from tests.support.corpus import Corpus
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.mirror import run_sync, write_sync_config
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.support.sampling import Sampler

pytestmark = pytest.mark.slow

REPOS, TAGS = 16, 2
RATE = 20
# The tolerance: the upstream sees at most 20 requests/s, give or take 10 %.
MOST_PER_SECOND = RATE * 1.1
WORKERS = 4
RETRY_AFTER = 3
# A request already on its way when the 429 was sent (its turn taken before the pause was
# noted) may still arrive just after it; none may arrive later in the window.
IN_FLIGHT_GRACE = 0.5


def assert_within_budget(sampler: Sampler) -> None:
    rates = sampler.rates()
    # Enough traffic for several whole seconds, each of them within the budget.
    assert sampler.total >= 4 * RATE and len(rates) >= 4, sampler.samples
    assert max(rates) <= MOST_PER_SECOND, [round(r, 1) for r in rates]
    print(f"\n[rate] {sampler.total} requests; per second: {[round(r, 1) for r in rates]}")


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RegistryServer, Corpus]]:
    yield from seeded_upstream(REPOS, TAGS)


def test_embedded_sync_stays_within_req_per_sec(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path
) -> None:
    server, _ = upstream
    config = write_sync_config(
        tmp_path,
        tmp_path / "store",
        [{"urls": [server.url], "reqPerSec": RATE}],
        settings={"concurrency": WORKERS},
    )
    with Sampler(server.request_count) as sampler:
        run = run_sync(config, "-q")
    assert run.code == 0, run.output[-3000:]
    assert_within_budget(sampler)


def run_workers(cluster: Cluster) -> RunStatus:
    for index in range(WORKERS):
        cluster.worker(f"w{index}")
    run_id, _ = trigger(cluster)
    status = wait_finished(cluster.coord(), run_id)
    assert (status.state, status.done, status.failures) == ("finished", REPOS, [])
    return status


def test_four_celery_workers_share_one_req_per_sec(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path, private_redis: RedisServer
) -> None:
    server, _ = upstream
    cluster = Cluster(tmp_path, server, private_redis.url)
    try:
        cluster.write_config(reqPerSec=RATE)
        with Sampler(server.request_count) as sampler:
            run_workers(cluster)
    finally:
        cluster.stop_all()
    assert_within_budget(sampler)


class SlowBlobs(FaultProxy):
    """Forwards everything; each blob body stops half-way for ``stall`` seconds, and the
    blob downloads open at once (request received, body not yet all sent) are counted."""

    def __init__(self, upstream: str, stall: float) -> None:
        super().__init__(upstream)
        self._stall = stall
        self._open = 0
        self.peak = 0
        self.blob_gets = 0

    def draw(self, method: str, path: str) -> Fault | None:
        super().draw(method, path)
        if method == "GET" and "/blobs/" in path:
            with self._lock:
                self._open += 1
                self.blob_gets += 1
                self.peak = max(self.peak, self._open)
        return None

    def send_body(
        self,
        path: str,
        source: io.BufferedIOBase,
        sink: io.BufferedIOBase,
        fault: Fault | None,
        length: int,
    ) -> bool:
        if "/blobs/" not in path:
            return super().send_body(path, source, sink, fault, length)
        closed = False
        try:
            sink.write(source.read(length // 2))
            sink.flush()
            time.sleep(self._stall)
            rest = source.read(length - length // 2)
            # Counted closed before its last bytes go: the client, which holds its slot
            # until it has them, then frees it at once, and the next GET may arrive
            # before this thread runs again.
            self._close()
            closed = True
            sink.write(rest)
            return True
        finally:
            if not closed:
                self._close()

    def _close(self) -> None:
        with self._lock:
            self._open -= 1


def test_four_celery_workers_share_one_req_concurrent(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path, private_redis: RedisServer
) -> None:
    server, _ = upstream
    with SlowBlobs(server.url, stall=0.2) as stub:
        cluster = Cluster(tmp_path, server, private_redis.url, upstream_url=stub.url)
        try:
            cluster.write_config(reqConcurrent=2)
            run_workers(cluster)
        finally:
            cluster.stop_all()
    # 4 workers x 4 blob threads would open up to 16 at once; the budget is 2 in all.
    assert stub.blob_gets > 0 and stub.peak <= 2, (stub.blob_gets, stub.peak)
    print(f"\n[rate] {stub.blob_gets} blob GETs, at most {stub.peak} open at once")


class ThrottleOnce(FaultProxy):
    """Forwards everything, stamping each request with this stub's clock; request number
    ``at`` is answered ``429`` with ``Retry-After`` instead, once."""

    def __init__(self, upstream: str, at: int, retry_after: int) -> None:
        super().__init__(upstream, retry_after=retry_after)
        self._at = at
        self.stamps: list[float] = []
        self.throttled_at: float | None = None

    def draw(self, method: str, path: str) -> Fault | None:
        super().draw(method, path)
        with self._lock:
            now = time.monotonic()
            self.stamps.append(now)
            if len(self.stamps) != self._at:
                return None
            self.throttled_at = now
            return Fault.THROTTLE


def test_a_429_seen_by_one_worker_pauses_them_all(
    upstream: tuple[RegistryServer, Corpus], tmp_path: Path, private_redis: RedisServer
) -> None:
    server, _ = upstream
    with ThrottleOnce(server.url, at=40, retry_after=RETRY_AFTER) as stub:
        cluster = Cluster(tmp_path, server, private_redis.url, upstream_url=stub.url)
        try:
            # A generous rate: the limiter is on (and with it the shared pause), the
            # workers are not slowed by it.
            cluster.write_config(reqPerSec=500, maxRetries=3)
            run_workers(cluster)
        finally:
            cluster.stop_all()
        assert stub.injected() == {"429": 1}
        refused = stub.throttled_at
        assert refused is not None
        window = (refused + IN_FLIGHT_GRACE, refused + RETRY_AFTER - 0.1)
        inside = [round(at - refused, 3) for at in stub.stamps if window[0] < at < window[1]]
        after = [at for at in stub.stamps if at >= window[1]]
        assert not inside, f"requests {inside} s after the 429, inside the pause"
        assert after, "the workers did not go on after the pause"
        late = [round(at - refused, 3) for at in stub.stamps if refused < at <= window[0]]
        print(f"\n[rate] 429 at request 40; arrivals in the grace: {late}; after: {len(after)}")
