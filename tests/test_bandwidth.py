"""The download rate cap, below the end-to-end tests: the virtual clock in one process and
in Redis, no Redis call per chunk for an upstream without a cap (counted by a private
Redis's own ``commandstats``), and what a capped body says of its wait: one log line, and
the bandwidth wait metric. ``downloadRate`` in the config: ``test_rate_config.py``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from syncworker.coord import Coordinator
from syncworker.coord.redislimits import BURST as REDIS_BURST
from syncworker.oci import Descriptor, Digest
from syncworker.registry.bandwidth import BURST, LocalBandwidth
from syncworker.registry.blobs import blob
from syncworker.registry.gates import Gates
from syncworker.registry.options import ClientOptions
from syncworker.registry.requestlog import LOGGER
from syncworker.registry.stack import Stack
from syncworker.registry.stats import ClientStats
from tests.support.corpus import Corpus, seed_many
from tests.support.images import make_image
from tests.support.mirror import run_sync, write_sync_config
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_local_cap_spaces_chunks_by_their_share_of_a_second() -> None:
    clock = Clock()
    cap = LocalBandwidth(1000, clock)
    assert cap.spend(500) == 0.5
    assert cap.spend(500) == 1.0  # queued behind the first, nothing read meanwhile
    clock.now += 1.0
    assert cap.spend(1000) == 1.0


def test_an_idle_upstream_keeps_at_most_the_burst() -> None:
    clock = Clock()
    cap = LocalBandwidth(1000, clock)
    cap.spend(1000)
    clock.now += 60.0
    # A minute idle buys BURST seconds of credit, no more.
    assert cap.spend(1000) == pytest.approx(1.0 - BURST)
    assert REDIS_BURST == BURST


@pytest.fixture
def private_coord() -> Iterator[tuple[RedisServer, Coordinator]]:
    server = RedisServer()
    client = redis.Redis.from_url(server.url)
    try:
        yield server, Coordinator(client, "bw")
    finally:
        client.close()
        server.close()


def test_redis_cap_is_one_clock_for_every_holder(
    private_coord: tuple[RedisServer, Coordinator],
) -> None:
    _, coord = private_coord
    first, second = coord.bandwidth("up", 1000), coord.bandwidth("up", 1000)
    assert first.spend(500) == pytest.approx(0.5, abs=0.01)
    # The second holder queues behind the first's bytes: one budget.
    assert second.spend(500) == pytest.approx(1.0, abs=0.02)
    assert coord.bandwidth("other", 1000).spend(500) == pytest.approx(0.5, abs=0.01)


def _script_calls(server: RedisServer) -> int:
    """Script calls the server has run (``INFO commandstats``)."""
    client = redis.Redis.from_url(server.url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_eval"))


def _sync_counting(tmp_path: Path, server: RedisServer, registry: dict[str, Any]) -> int:
    tmp_path.mkdir()
    config = write_sync_config(
        tmp_path, tmp_path / "store", [registry], settings={"redis": server.url}
    )
    before = _script_calls(server)
    run = run_sync(config, "-q")
    assert run.code == 0, run.output[-3000:]
    return _script_calls(server) - before


@pytest.fixture(scope="module")
def big_blobs() -> Iterator[tuple[RegistryServer, Corpus]]:
    server = RegistryServer()
    try:
        yield server, seed_many(server, repos=2, tags=1, layers=3, layer_size=256 * 1024)
    finally:
        server.stop()


def test_redis_is_asked_per_chunk_only_with_a_cap(
    tmp_path: Path, big_blobs: tuple[RegistryServer, Corpus]
) -> None:
    """The same mirror twice on a Redis of its own: without ``downloadRate`` the cap's key
    is never written (its script always writes it, so it never ran); with it, the run
    makes one more script call per chunk read."""
    server, _ = big_blobs
    redis_server = RedisServer()
    try:
        plain = _sync_counting(tmp_path / "plain", redis_server, {"urls": [server.url]})
        client = redis.Redis.from_url(redis_server.url)
        assert client.keys("*:limit:*") == []
        capped = _sync_counting(
            tmp_path / "capped", redis_server, {"urls": [server.url], "downloadRate": "64MiB"}
        )
        assert client.keys("*:limit:*") == [f"syncworker:limit:{server.host}:bytes".encode()]
        client.close()
    finally:
        redis_server.close()
    # 2 images: 4 distinct layers of 256 KiB, 2 configs and 2 manifests, each at least
    # one chunk.
    assert capped - plain >= 8, (plain, capped)


class _VirtualTime:
    """The cap's clock, and the sleep that waits for it by moving it on."""

    now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class _Hook:
    """What the metrics would be told of the waits."""

    def __init__(self) -> None:
        self.rate_limited = self.capped_for = 0.0

    def response(self, method: str, code: str) -> None:
        pass

    def retried(self) -> None:
        pass

    def waited(self, seconds: float) -> None:
        self.rate_limited += seconds

    def capped(self, seconds: float) -> None:
        self.capped_for += seconds

    def pull_budget(self, remaining: int) -> None:
        pass


def test_a_capped_body_is_one_log_line_and_a_bandwidth_wait(
    registry: RegistryServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A 256 KiB layer at 64 KiB/s waits 4 s (of the cap's clock) over many chunks: one
    INFO line when the body ends, naming it; the small config blob a DEBUG line. The waits
    are counted as the cap's, not as the request rate limit's."""
    image = make_image("bandwidth-log", layers=1, layer_size=256 * 1024)
    push_image(registry.url, "bandwidth/log", "v1", image)
    config, layer = image.blobs[0], image.blobs[-1]
    clock, hook = _VirtualTime(), _Hook()
    gates = Gates(bandwidth=LocalBandwidth(64 * 1024, clock=clock))
    t = Stack(
        [registry.url], None, ClientOptions(), ClientStats(hook), sleep=clock.sleep, gates=gates
    )
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for pushed in (layer, config):
            wanted = Descriptor(pushed.media_type, Digest.parse(pushed.digest), pushed.size)
            with blob(t, "bandwidth/log", wanted) as chunks:
                assert sum(len(chunk) for chunk in chunks) == pushed.size
    t.close()
    said = [r for r in caplog.records if "download rate cap held it back" in r.getMessage()]
    got = [(r.levelno, r.getMessage()) for r in said]
    assert len(got) == 2, got  # one line per body, however many chunks it took
    assert got[0][0] == logging.INFO and layer.digest in got[0][1] and "4.0 s" in got[0][1]
    assert got[1][0] == logging.DEBUG and config.digest in got[1][1]
    assert hook.capped_for == pytest.approx((layer.size + config.size) / (64 * 1024))
    assert hook.rate_limited == 0
