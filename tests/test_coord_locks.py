"""Locks and single-flights: one contract suite run against every implementation of the
engine's ``Locks`` (in-process threading, real Redis, fakeredis), then what only Redis has:
TTLs, the keeper thread, other processes, a killed holder."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import fakeredis
import pytest
from redis.lock import Lock

from syncworker.coord import Coordinator, LockBusy
from syncworker.coord.keeper import Keeper, new_lock
from syncworker.engine import LocalLocks, Locks
from syncworker.waits import LockWaits
from tests.support.debug_log import debug_handler
from tests.test_coord_support import _fake_server

# The shared fixtures: coord (real Redis and fakeredis), real_coord.
pytest_plugins = ["tests.test_coord_support"]

DIGEST = "sha256:" + "ab" * 32


def _run_threads(count: int, target: object) -> None:
    """Start `count` threads on `target(i)` together; re-raise the first failure."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    if errors:
        raise errors[0]


class _Occupancy:
    """Counts holders inside a critical section; remembers the most at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.inside = 0
        self.most = 0
        self.entries = 0

    def __enter__(self) -> None:
        with self._guard:
            self.inside += 1
            self.entries += 1
            self.most = max(self.most, self.inside)

    def __exit__(self, *exc: object) -> None:
        with self._guard:
            self.inside -= 1


@pytest.fixture(params=["local", "redis", "fakeredis"])
def locks(request: pytest.FixtureRequest) -> Locks:
    """Each implementation of the engine's Locks protocol in turn."""
    if request.param == "local":
        return LocalLocks()
    coordinator: Coordinator = request.getfixturevalue(
        "real_coord" if request.param == "redis" else "fake_coord"
    )
    return coordinator


# Flight waits short enough for a test, long enough that a loaded machine keeps to them.
QUICK = LockWaits(stall=2.0, foreign=0.5, progress_every=0.05)


@pytest.fixture(params=["local", "redis", "fakeredis"])
def quick_locks(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> Iterator[Locks]:
    """Each implementation again, built with :data:`QUICK` waits."""
    if request.param == "local":
        yield LocalLocks(QUICK)
        return
    prefix = redis_prefix.rstrip(":")
    if request.param == "redis":
        coordinator = Coordinator.from_url(redis_url, prefix=prefix, waits=QUICK)
    else:
        client = fakeredis.FakeRedis(server=_fake_server())
        coordinator = Coordinator(client, prefix=prefix, where="fakeredis", waits=QUICK)
    yield coordinator
    keys = list(coordinator.client.scan_iter(match=f"{prefix}:*"))
    if keys:
        coordinator.client.delete(*keys)
    coordinator.close()


class _Holder(threading.Thread):
    """Holds ``digest``'s flight from ``source`` until :meth:`leave`; ``trickle``: reports a
    little more progress every few hundredths of a second meanwhile, else none at all."""

    def __init__(self, locks: Locks, digest: str, source: str, *, trickle: bool) -> None:
        super().__init__()
        self.locks, self.digest, self.source, self.trickle = locks, digest, source, trickle
        self.holding = threading.Event()
        self._leave = threading.Event()
        self.reported = 0

    def run(self) -> None:
        with self.locks.blob_flight(self.digest, source=self.source) as flight:
            self.holding.set()
            while not self._leave.wait(0.02):
                if self.trickle:
                    self.reported += 512
                    flight.progress(self.reported)

    def leave(self) -> None:
        self._leave.set()
        self.join(30)


@pytest.fixture
def holders() -> Iterator[list[_Holder]]:
    started: list[_Holder] = []
    yield started
    for holder in started:
        holder.leave()


def _hold(
    holders: list[_Holder], locks: Locks, digest: str, source: str, *, trickle: bool
) -> _Holder:
    holder = _Holder(locks, digest, source, trickle=trickle)
    holders.append(holder)
    holder.start()
    assert holder.holding.wait(30)
    return holder


def test_a_trickling_holder_of_another_upstream_delays_nobody_for_long(
    quick_locks: Locks, holders: list[_Holder]
) -> None:
    """Copies from upstream "fast" wait a moment for upstream "slow"'s trickle, then fetch
    from their own: once for all of them, all while the trickle goes on."""
    digest = f"sha256:{uuid.uuid4().hex * 2}"
    slow = _hold(holders, quick_locks, digest, "slow", trickle=True)
    store: set[str] = set()
    fetches: list[int] = []

    def fast(i: int) -> None:
        with quick_locks.blob_flight(digest, source="fast") as flight:
            if not (flight.look_again and digest in store):
                fetches.append(i)
                time.sleep(0.1)
                store.add(digest)

    _run_threads(3, fast)
    assert slow.is_alive() and slow.reported > 0  # still holding, still trickling
    assert len(fetches) == 1


def test_a_holder_without_progress_loses_the_flight(
    quick_locks: Locks, holders: list[_Holder]
) -> None:
    digest = f"sha256:{uuid.uuid4().hex * 2}"
    stuck = _hold(holders, quick_locks, digest, "docker", trickle=False)
    with quick_locks.blob_flight(digest, source="docker") as flight:
        assert flight.look_again and stuck.is_alive()  # taken over from a holder still inside
        stuck.leave()  # the old holder leaving does not free the new holder's flight
        with (
            pytest.raises(LockBusy),
            quick_locks.blob_flight(digest, source="docker", blocking_timeout=0),
        ):
            pass


def test_a_holder_making_progress_keeps_the_flight_and_waits_are_bounded(
    quick_locks: Locks, holders: list[_Holder]
) -> None:
    digest = f"sha256:{uuid.uuid4().hex * 2}"
    busy = _hold(holders, quick_locks, digest, "docker", trickle=True)
    with (
        pytest.raises(LockBusy),
        quick_locks.blob_flight(digest, source="docker", blocking_timeout=QUICK.stall * 2),
    ):
        pass
    assert busy.is_alive()  # two stall periods of progress: nobody took it over
    busy.leave()
    with quick_locks.blob_flight(digest, source="docker") as flight:
        assert flight.look_again  # it finished just now


def test_a_waiter_that_gives_up_stops_waiting_at_its_next_look(
    quick_locks: Locks, holders: list[_Holder]
) -> None:
    """A holder making progress keeps its flight; a waiter whose job ended meanwhile (its
    ``given_up`` says so) stops with LockBusy at its next look, long before its timeout."""
    digest = f"sha256:{uuid.uuid4().hex * 2}"
    busy = _hold(holders, quick_locks, digest, "docker", trickle=True)
    looks: list[int] = []

    def given_up() -> bool:
        looks.append(1)
        return len(looks) >= 3

    with (
        pytest.raises(LockBusy),
        quick_locks.blob_flight(digest, source="docker", blocking_timeout=3600, given_up=given_up),
    ):
        pass
    assert len(looks) == 3 and busy.is_alive()
    busy.leave()


def test_both_implementations_keep_the_same_waits(real_coord: Coordinator) -> None:
    assert real_coord.waits == LocalLocks().waits == LockWaits()


class _Waiters(logging.Handler):
    """Counts callers that start waiting for someone else's flight (both implementations
    log it at debug level), so a test knows every request is in before the copier finishes,
    without timing guesses."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.waiting = threading.Semaphore(0)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("waiting for"):
            self.waiting.release()


@pytest.fixture
def waiters() -> Iterator[_Waiters]:
    with debug_handler(_Waiters()) as handler:
        yield handler


def test_repo_lock_excludes_threads(locks: Locks) -> None:
    occupancy = _Occupancy()

    def worker(_: int) -> None:
        for _round in range(3):
            with locks.repo_lock("library/alpine", blocking_timeout=60), occupancy:
                time.sleep(0.01)

    _run_threads(6, worker)
    assert occupancy.entries == 18
    assert occupancy.most == 1


def test_repo_lock_busy_after_blocking_timeout(locks: Locks) -> None:
    with locks.repo_lock("library/alpine"):
        with pytest.raises(LockBusy), locks.repo_lock("library/alpine", blocking_timeout=0):
            pass
        with locks.repo_lock("library/other", blocking_timeout=0):  # other repos are free
            pass
    with locks.repo_lock("library/alpine", blocking_timeout=0):  # and it was released
        pass


def _hold_and_log(url: str, prefix: str, rounds: int) -> None:
    """Child process: take the lock `rounds` times, logging enter/exit in a Redis list."""
    coordinator = Coordinator.from_url(url, prefix=prefix)
    journal = f"{prefix}:journal"
    for _ in range(rounds):
        with coordinator.repo_lock("library/busybox", blocking_timeout=60):
            coordinator.client.rpush(journal, f"in {os.getpid()}")
            time.sleep(0.02)
            coordinator.client.rpush(journal, f"out {os.getpid()}")


def test_repo_lock_excludes_processes(real_coord: Coordinator, redis_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_hold_and_log, args=(redis_url, real_coord.prefix, 10))
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    journal = [e.decode() for e in real_coord.client.lrange(f"{real_coord.prefix}:journal", 0, -1)]
    assert len(journal) == 40
    # Mutual exclusion: every "in" is followed by the same process's "out".
    for entered, left in zip(journal[::2], journal[1::2], strict=True):
        assert entered.startswith("in ") and left == "out " + entered[3:]
    assert len({entry.split()[1] for entry in journal}) == 2


def test_lock_ttl_is_extended_while_held(coord: Coordinator) -> None:
    # Generous against a loaded machine: the keeper may be late by up to two periods.
    ttl = 1.5
    refusals = 0
    with coord.repo_lock("library/nginx", ttl=ttl):
        # Outlive the TTL several times; the lock must stay ours all along.
        for _ in range(20):
            with pytest.raises(LockBusy), coord.repo_lock("library/nginx", blocking_timeout=0):
                pass
            refusals += 1
            time.sleep(ttl / 5)
        assert coord.client.pttl(f"{coord.prefix}:lock:repo:library/nginx") > 0
    assert refusals == 20
    with coord.repo_lock("library/nginx", blocking_timeout=0):
        pass


def test_lost_lock_warns_and_spares_the_new_holder(
    coord: Coordinator, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"{coord.prefix}:lock:repo:library/redis"
    other = Coordinator(coord.client, coord.prefix)
    with caplog.at_level(logging.WARNING, logger="syncworker.coord.redislocks"):
        with coord.repo_lock("library/redis", ttl=30):
            coord.client.delete(key)  # as if it had expired during a long pause
            held_by_other = other.repo_lock("library/redis", ttl=30, blocking_timeout=0)
            held_by_other.__enter__()
        # Our exit must not have released the other holder's lock.
        assert coord.client.exists(key) == 1
        held_by_other.__exit__(None, None, None)
    assert coord.client.exists(key) == 0
    assert any("no longer held" in r.message or "expired" in r.message for r in caplog.records)


_KILLED_HOLDER = """
import sys, time
from syncworker.coord import Coordinator
coordinator = Coordinator.from_url(sys.argv[1], prefix=sys.argv[2])
with coordinator.repo_lock("library/ubuntu", ttl=2.0):
    print("held", flush=True)
    time.sleep(3600)
"""


def test_killed_holders_lock_expires(real_coord: Coordinator, redis_url: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_HOLDER, redis_url, real_coord.prefix],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        # Alive, the holder keeps its lock past the TTL.
        time.sleep(3.0)
        with pytest.raises(LockBusy), real_coord.repo_lock("library/ubuntu", blocking_timeout=0):
            pass
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        # Dead, its lock expires by the TTL and someone else gets it.
        with real_coord.repo_lock("library/ubuntu", blocking_timeout=30):
            pass
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_blob_flight_fetches_each_blob_once(locks: Locks) -> None:
    store: set[str] = set()
    fetches: list[int] = []
    occupancy = _Occupancy()

    def worker(i: int) -> None:
        with locks.blob_flight(DIGEST, source="docker") as flight, occupancy:
            # The engine re-checks the store inside the flight only when the flight says so.
            if not (flight.look_again and DIGEST in store):
                fetches.append(i)
                time.sleep(0.05)
                store.add(DIGEST)

    _run_threads(8, worker)
    assert len(fetches) == 1
    assert occupancy.most == 1 and occupancy.entries == 8


def test_blob_flight_says_when_to_look_again(locks: Locks) -> None:
    """Nobody held the flight: fetch at once. A flight that finished between a caller's look
    at the store and its turn (no wait at all) still makes that caller look again."""
    fresh = f"sha256:{uuid.uuid4().hex * 2}"
    with locks.blob_flight(fresh, source="docker") as flight:
        assert flight.look_again is False
    with locks.blob_flight(fresh, source="docker") as flight:
        assert flight.look_again is True


def test_image_flight_coalesces_identical_requests(locks: Locks, waiters: _Waiters) -> None:
    """Requests that arrive while a copy runs are not coalesced into it: it may have read the
    tag before a newer push. One of them copies again, and the others share that copy."""
    callers = 4
    running = threading.Event()
    results: list[bool] = []

    def first_copy() -> None:
        with locks.image_flight("docker", "library/alpine", "3.20") as copier:
            results.append(copier)
            running.set()
            for _other in range(callers):
                assert waiters.waiting.acquire(timeout=60)  # the others arrive while we copy

    def later(_: int) -> None:
        with locks.image_flight("docker", "library/alpine", "3.20") as copier:
            results.append(copier)

    thread = threading.Thread(target=first_copy)
    thread.start()
    assert running.wait(30)
    _run_threads(callers, later)
    thread.join(30)
    assert results[0] is True
    assert sorted(results[1:]) == [False] * (callers - 1) + [True]
    with locks.image_flight("docker", "library/alpine", "3.20") as copier:
        assert copier  # a request after the flight ended is a new flight


def test_image_flight_waiter_takes_over_from_a_failed_copier(
    locks: Locks, waiters: _Waiters
) -> None:
    started = threading.Event()
    outcome: list[bool] = []

    def failing_copier() -> None:
        with pytest.raises(RuntimeError), locks.image_flight("docker", "x/y", "latest") as first:
            assert first
            started.set()
            assert waiters.waiting.acquire(timeout=60)  # the second request waits on us
            raise RuntimeError("upstream broke")

    thread = threading.Thread(target=failing_copier)
    thread.start()
    assert started.wait(30)
    with locks.image_flight("docker", "x/y", "latest", blocking_timeout=60) as copier:
        outcome.append(copier)
    thread.join(30)
    assert outcome == [True]


def test_image_flight_times_out_with_lock_busy(locks: Locks) -> None:
    with locks.image_flight("docker", "x/z", "v1") as first:
        assert first
        with (
            pytest.raises(LockBusy),
            locks.image_flight("docker", "x/z", "v1", blocking_timeout=0.3),
        ):
            pass


def test_local_locks_forget_keys_nobody_uses() -> None:
    """The in-process map holds only what is in flight, not every digest ever copied."""
    local = LocalLocks()

    def worker(i: int) -> None:
        with local.blob_flight(f"sha256:{i % 3:064x}", source="docker"), local.repo_lock("a/b"):
            time.sleep(0.01)

    _run_threads(6, worker)
    assert local._entries == {} and local._flights == {}


def test_one_keeper_thread_keeps_every_held_lock(real_coord: Coordinator) -> None:
    """Ten locks held at once, past their TTL: one keeper thread re-arms them all."""
    ttl, holders = 1.0, 10
    inside = threading.Barrier(holders + 1)
    leave = threading.Event()

    def holder(i: int) -> None:
        with real_coord.blob_flight(f"sha256:{i:064x}", source="docker", ttl=ttl):
            inside.wait(timeout=60)
            assert leave.wait(timeout=60)

    def keepers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "lock-keeper"}

    others = keepers()  # of Coordinators that earlier tests left open
    threads = [threading.Thread(target=holder, args=(i,)) for i in range(holders)]
    for thread in threads:
        thread.start()
    try:
        inside.wait(timeout=60)
        time.sleep(ttl * 2.5)
        assert len(keepers() - others) == 1
        for i in range(holders):
            assert real_coord.client.pttl(f"{real_coord.prefix}:flight:blob:sha256:{i:064x}") > 0
    finally:
        leave.set()
        for thread in threads:
            thread.join(timeout=60)
    for i in range(holders):
        assert not real_coord.client.exists(f"{real_coord.prefix}:flight:blob:sha256:{i:064x}")


def test_a_lock_kept_while_the_keeper_stops_is_kept_alive(real_coord: Coordinator) -> None:
    """``Keeper.stop`` waits for its thread, which is busy extending a lock; a lock taken
    meanwhile must get a thread of its own, not the ending one, or it expires while held."""
    keeper, ttl = Keeper(), 1.0
    extending, finish = threading.Event(), threading.Event()

    class SlowLock(Lock):
        def reacquire(self) -> bool:
            extending.set()
            assert finish.wait(timeout=60)
            return bool(super().reacquire())

    key = f"{real_coord.prefix}:keeper:"
    first = SlowLock(real_coord.client, key + "first", timeout=ttl, thread_local=False)
    second = new_lock(real_coord.client, key + "second", ttl)
    assert first.acquire() and second.acquire()
    with keeper.keep(first, ttl):
        assert extending.wait(timeout=60)
        stopper = threading.Thread(target=keeper.stop)
        stopper.start()
        with keeper.keep(second, ttl) as held:
            finish.set()
            stopper.join(timeout=60)
            time.sleep(ttl * 2.5)
            assert not held.lost and second.owned()
    keeper.stop()
    first.release()
    second.release()
