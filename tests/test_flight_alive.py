"""A blob flight holder that is alive but waiting on purpose keeps its flight; an expired
progress entry is no progress.

Two mirrors (two workers) share Redis and copy one layer from a real registry into two
repositories. The first holds the layer's flight and is told by the upstream to come back
later (a 429 with a ``Retry-After`` longer than the flight's stall), or its store takes that
long to finish the upload: it waits without a byte moving, so only its heartbeat tells the
second it is alive; the layer must be fetched once. In each ``Locks`` implementation, a
holder pausing on purpose for two stall periods keeps its flight. And a waiter's view: a
heartbeat or a byte is a holder alive, an expired progress entry (a holder silent longer
than the lock's TTL) is neither."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from syncworker.coord import Coordinator
from syncworker.engine import Locks, Mirror, RepoResult, Upstream
from syncworker.engine.locks import LocalLocks
from syncworker.errors import LockBusy
from syncworker.filters import ContentRule, ContentRules
from syncworker.heartbeat import holding, pause
from syncworker.oci import Digest
from syncworker.registry import ClientOptions
from syncworker.store.fs import FsStore
from syncworker.waits import FlightWatch, LockWaits, Verdict
from tests.support.debug_log import debug_handler
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.images import make_image, make_layer
from tests.support.ports import wait_until
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer

NAME = "upstream"
# A stall short for a test, three heartbeats long, so a loaded machine keeps to it.
WAITS = LockWaits(stall=3.0, foreign=60.0, progress_every=0.05)
# The holder's wait on purpose: two stall periods.
RETRY_AFTER = 6
WAIT_SECONDS = 60.0


@pytest.fixture(params=["local", "redis"])
def locks(request: pytest.FixtureRequest, redis_url: str, redis_prefix: str) -> Iterator[Locks]:
    if request.param == "local":
        yield LocalLocks(WAITS)
        return
    prefix = redis_prefix.rstrip(":")
    coordinator = Coordinator.from_url(redis_url, prefix=prefix, waits=WAITS)
    yield coordinator
    keys = list(coordinator.client.scan_iter(match=f"{prefix}:*"))
    if keys:
        coordinator.client.delete(*keys)
    coordinator.close()


class _Waiting(logging.Handler):
    """Set once a caller starts waiting for someone else's blob flight (both
    implementations log it at debug level)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.started = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("waiting for blob"):
            self.started.set()


@pytest.fixture
def waiting() -> Iterator[_Waiting]:
    with debug_handler(_Waiting()) as handler:
        yield handler


class _SlowToFinish(FsStore):
    """A filesystem store that takes two stall periods to finish each blob once it has read
    all of it, as S3 completing a large upload does; ``finished`` counts those blobs."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.finished = 0

    def put_blob(self, repo: str, digest: Digest, size: int | None, chunks: Iterable[bytes]) -> int:
        data = b"".join(chunks)
        time.sleep(WAITS.stall * 2)
        self.finished += 1
        return super().put_blob(repo, digest, size, [data])


@pytest.mark.parametrize("wait", ["retry-after", "upload"])
def test_a_holder_waiting_on_purpose_keeps_its_flight_and_fetches_once(
    registry: RegistryServer,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    waiting: _Waiting,
    wait: str,
) -> None:
    """The first mirror holds the layer's flight while it waits out a 429's Retry-After,
    or while its store finishes the upload; the second waits for it, longer than a stall,
    seeing no byte move."""
    layer = make_layer(("alive", uuid.uuid4().hex), size=4096)
    image = make_image(("alive", wait), base=[layer], layers=0)
    repos = [f"alive/{wait}/first", f"alive/{wait}/second"]  # the registry is the session's
    for repo in repos:
        push_image(registry.url, repo, "v1", image)
    throttled = wait == "retry-after"
    proxy = FaultProxy(
        registry.url,
        rate=1.0 if throttled else 0.0,
        faults=[Fault.THROTTLE],
        paths=f"/blobs/{layer.digest}",
        retry_after=RETRY_AFTER,
    )
    options = ClientOptions(max_retries=2, retry_delay=0.01)
    rules = ContentRules([ContentRule("alive/**")])
    upstreams = {NAME: Upstream(NAME, (proxy.url,), None, options, rules)}
    store = _SlowToFinish(tmp_path / "store") if not throttled else FsStore(tmp_path / "store")
    prefix = redis_prefix.rstrip(":")
    workers = [Coordinator.from_url(redis_url, prefix=prefix, waits=WAITS) for _ in range(2)]
    with (
        proxy,
        Mirror(upstreams, store, workers[0]) as first,
        Mirror(upstreams, store, workers[1]) as second,
        ThreadPoolExecutor(2) as pool,
    ):
        held = pool.submit(first.sync_repo, NAME, repos[0])
        if throttled:
            assert wait_until(lambda: proxy.injected(), timeout=WAIT_SECONDS)
            proxy.rate = 0.0
        waited = pool.submit(second.sync_repo, NAME, repos[1])
        assert waiting.started.wait(WAIT_SECONDS)
        results: list[RepoResult] = [held.result(WAIT_SECONDS), waited.result(WAIT_SECONDS)]
    for coordinator in workers:
        coordinator.close()
    assert [r.failures for r in results] == [[], []]
    assert proxy.injected() == ({"429": 1} if throttled else {})
    # The layer and the config, each fetched once: the second linked both.
    assert sum(r.blobs_fetched for r in results) == len(image.blobs)


class _Holder(threading.Thread):
    """Holds ``digest``'s flight until told to leave, pausing on purpose (``on_purpose``)
    or sleeping silent."""

    def __init__(self, locks: Locks, digest: str, on_purpose: bool) -> None:
        super().__init__(daemon=True)
        self.locks, self.digest, self.on_purpose = locks, digest, on_purpose
        self.holding = threading.Event()
        self.leave = threading.Event()

    def run(self) -> None:
        with self.locks.blob_flight(self.digest, source=NAME) as flight, holding(flight):
            self.holding.set()
            while not self.leave.is_set():
                if self.on_purpose:
                    pause(0.05)
                else:
                    time.sleep(0.05)


def _holder(locks: Locks, on_purpose: bool) -> _Holder:
    holder = _Holder(locks, f"sha256:{uuid.uuid4().hex * 2}", on_purpose)
    holder.start()
    assert holder.holding.wait(WAIT_SECONDS)
    return holder


def test_a_holder_pausing_on_purpose_keeps_its_flight(locks: Locks) -> None:
    holder = _holder(locks, on_purpose=True)
    try:
        with (
            pytest.raises(LockBusy),
            locks.blob_flight(holder.digest, source=NAME, blocking_timeout=WAITS.stall * 2),
        ):
            pass
        assert holder.is_alive()
    finally:
        holder.leave.set()
        holder.join(WAIT_SECONDS)


def test_an_expired_progress_entry_is_no_progress() -> None:
    """The waiter saw the holder at 100 bytes; its entry then expired (None): the holder
    loses the flight one stall after it was last seen moving, not one stall after that."""
    watch = FlightWatch("blob", NAME, WAITS)
    assert watch.see("holder", NAME, 100, None, 0.0) is Verdict.WAIT
    assert watch.see("holder", None, None, None, WAITS.stall / 2) is Verdict.WAIT
    assert watch.see("holder", None, None, None, WAITS.stall) is Verdict.TAKE_OVER


def test_a_heartbeat_or_a_byte_is_a_holder_alive() -> None:
    watch = FlightWatch("blob", NAME, WAITS)
    assert watch.see("holder", NAME, 100, None, 0.0) is Verdict.WAIT
    assert watch.see("holder", NAME, 100, 1, WAITS.stall * 0.9) is Verdict.WAIT
    assert watch.see("holder", NAME, 200, 1, WAITS.stall * 1.8) is Verdict.WAIT
    assert watch.see("holder", NAME, 200, 1, WAITS.stall * 2.9) is Verdict.TAKE_OVER
