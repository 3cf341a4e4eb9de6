"""The upstream rate budget: one contract suite run against the in-process limiter and the
Redis one, then what only Redis has (several workers sharing one budget, dead leases), and
the transport's use of it (a 429 pauses, the retry does not wait twice, no limit no cost).

Assertions are on what a limiter answers (turn taken, or how long to wait) and on what a
stub server saw, never on how long a test took.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from syncworker.coord import Coordinator
from syncworker.registry import ClientOptions, Deadline, RegistryClient
from syncworker.registry.gates import Gates, LocalLimiters
from syncworker.registry.limits import Limiter, LocalLimiter, new_token
from syncworker.registry.stack import Stack
from syncworker.registry.stats import ClientStats
from tests.support.hostile import Answer, HostileRegistry

pytest_plugins = ["tests.test_coord_support"]

MakeLimiter = Callable[[float | None, int | None], Limiter]


@pytest.fixture(params=["local", "redis"])
def make_limiter(request: pytest.FixtureRequest) -> MakeLimiter:
    """A fresh limiter for upstream "up" with the given limits, in-process or in Redis."""
    if request.param == "local":
        return lambda rate, concurrent: LocalLimiter(rate, concurrent)
    coord: Coordinator = request.getfixturevalue("real_coord")
    return lambda rate, concurrent: coord.limiter("up", rate, concurrent)


# -- the contract ------------------------------------------------------------------------


def test_a_rate_spaces_turns_one_interval_apart(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(2.0, None)  # one turn every 0.5 s
    assert limiter.acquire(new_token()) == 0
    wait = limiter.acquire(new_token())
    assert 0 < wait <= 0.5
    time.sleep(wait)
    assert limiter.acquire(new_token()) == 0


def test_concurrency_slots_are_taken_and_given_back(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(None, 2)
    first, second, third = new_token(), new_token(), new_token()
    assert limiter.acquire(first) == 0
    assert limiter.acquire(second) == 0
    assert limiter.acquire(third) < 0  # every slot taken: poll
    limiter.release(first)
    assert limiter.acquire(third) == 0


def test_a_pause_stops_every_turn_and_is_never_shortened(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(1000.0, 10)
    limiter.pause(3.0)
    limiter.pause(1.0)  # a shorter pause asked later does not cut the first one
    wait = limiter.acquire(new_token())
    assert 2.0 < wait <= 3.0
    limiter.pause(0.0)
    limiter.pause(float("nan"))
    assert 2.0 < limiter.acquire(new_token()) <= 3.0


# -- Redis: one budget for the cluster -----------------------------------------------------


def test_workers_on_one_redis_share_the_budget(real_coord: Coordinator, redis_url: str) -> None:
    """Two Coordinators (two worker processes' clients) draw from one budget per upstream;
    another upstream's budget is its own."""
    other = Coordinator.from_url(redis_url, prefix=real_coord.prefix)
    try:
        mine = real_coord.limiter("up", 1.0, 1)
        theirs = other.limiter("up", 1.0, 1)
        token = new_token()
        assert mine.acquire(token) == 0
        assert theirs.acquire(new_token()) < 0  # the slot is taken by the other worker
        mine.release(token)
        assert theirs.acquire(new_token()) > 0  # the slot is free; the second is not due
        other.limiter("up", None, None).pause(2.0)
        assert mine.acquire(new_token()) > 1.0  # a pause noted by one stops the other
        assert other.limiter("elsewhere", 1.0, 1).acquire(new_token()) == 0
    finally:
        other.close()


def test_a_dead_workers_slot_is_freed_by_its_lease(
    real_coord: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("syncworker.coord.redislimits.SLOT_LEASE", 0.2)
    limiter = real_coord.limiter("up", None, 1)
    assert limiter.acquire(new_token()) == 0  # never released: its worker was killed
    assert limiter.acquire(new_token()) < 0
    time.sleep(0.3)
    assert limiter.acquire(new_token()) == 0


# -- the transport -----------------------------------------------------------------------


class _Recorded:
    """A HostileRegistry whose requests are stamped with the stub's own clock."""

    def __init__(self, stub: HostileRegistry) -> None:
        self.stub = stub
        self.times: list[tuple[float, str]] = []
        original = stub._next

        def stamped(method: str, path: str) -> Answer | None:
            self.times.append((time.monotonic(), path))
            return original(method, path)

        stub._next = stamped  # type: ignore[method-assign]


@pytest.fixture
def recorded() -> Iterator[_Recorded]:
    stub = HostileRegistry()
    stub.route("GET", "/v2/a/tags/list", Answer(200, b'{"name": "a", "tags": ["x"]}'))
    stub.route("GET", "/v2/b/tags/list", Answer(200, b'{"name": "b", "tags": ["y"]}'))
    yield _Recorded(stub)
    stub.close()


def test_a_429_pauses_every_thread_once_and_the_retry_does_not_wait_twice(
    recorded: _Recorded,
) -> None:
    """One thread's 429 (Retry-After: 2) stops the other thread's requests too, from the
    moment it is seen; the thread that got it sleeps about 2 s in all, not its backoff
    plus the pause."""
    stub = recorded.stub
    stub.first("GET", "/v2/a/tags/list", Answer(429, b"", {"Retry-After": "2"}))
    slept: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        if threading.current_thread() is threading.main_thread():
            with lock:
                slept.append(seconds)
        time.sleep(seconds)

    limiter = LocalLimiter(50.0, None)
    options = ClientOptions(max_retries=2, retry_delay=0.1)
    t = Stack([stub.url], None, options, ClientStats(), sleep=sleep, gates=Gates(limiter=limiter))
    done = threading.Event()

    def other_thread() -> None:
        while not done.is_set():
            t.fetch("GET", "/v2/b/tags/list", scope=None, cap=1024)

    other = threading.Thread(target=other_thread)
    other.start()
    try:
        time.sleep(0.2)  # the other thread is sending
        assert t.fetch("GET", "/v2/a/tags/list", scope=None, cap=1024).status == 200
    finally:
        done.set()
        other.join()
    refused_at = next(at for at, path in recorded.times if path == "/v2/a/tags/list")
    # A request already on its way when the 429 was sent may still arrive just after it.
    in_pause = [
        at - refused_at for at, _ in recorded.times if refused_at + 0.1 < at < refused_at + 1.9
    ]
    assert not in_pause, in_pause
    retried = [at for at, path in recorded.times if path == "/v2/a/tags/list"][1:]
    assert len(retried) == 1 and retried[0] >= refused_at + 1.9
    # The backoff (0.1 s) and the rest of the pause stay within one Retry-After and one
    # backoff: nothing waited twice. The waits for a turn of the rate (1/50 s each) are
    # left out: how many the retry waits depends on how often the other thread, sending
    # in a loop, takes the turn first.
    turn = 1 / 50
    longer = [seconds for seconds in slept if seconds > turn * 1.5]
    assert 1.9 <= sum(longer) <= 2.0 + 0.1 + 0.05, slept


def test_without_a_limit_the_client_has_no_limiter(recorded: _Recorded) -> None:
    """No limit configured: no limiter is made, so no request pays for one (no Redis)."""
    from syncworker.engine import LocalLocks, Mirror, Upstream
    from syncworker.filters import ContentRules

    class Refusing(LocalLimiters):
        def limiter(self, *args: object) -> Limiter:  # type: ignore[override]
            raise AssertionError("a limiter was asked for")

    up = Upstream("up", (recorded.stub.url,), {}, ClientOptions(), ContentRules([]))
    mirror = Mirror({"up": up}, store=None, locks=LocalLocks(), limiters=Refusing())  # type: ignore[arg-type]
    with mirror:
        assert mirror.client("up").tags("a") == ["x"]


def test_a_slot_is_given_back_when_its_body_is_read(recorded: _Recorded) -> None:
    limiter = LocalLimiter(None, 1)
    client = RegistryClient([recorded.stub.url], gates=Gates(limiter=limiter))
    client = client.bounded(Deadline.after(10.0, "the test's deadline"))
    for _ in range(3):  # with one slot, a slot not given back fails the second call
        assert client.tags("a") == ["x"]
    assert limiter.acquire(new_token()) == 0
