"""Locks and single-flights, on a real Redis (and the embedded fakeredis where in-process)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from syncworker.coord import Coordinator, LockBusy

# The shared fixtures: coord (real Redis and embedded), real_coord.
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


def test_repo_lock_excludes_threads(coord: Coordinator) -> None:
    occupancy = _Occupancy()

    def worker(_: int) -> None:
        for _round in range(3):
            with coord.repo_lock("library/alpine", blocking_timeout=60), occupancy:
                time.sleep(0.01)

    _run_threads(6, worker)
    assert occupancy.entries == 18
    assert occupancy.most == 1


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
    with caplog.at_level(logging.WARNING, logger="syncworker.coord.locks"):
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


def test_blob_flight_fetches_each_blob_once(coord: Coordinator) -> None:
    store: set[str] = set()
    fetches: list[int] = []
    occupancy = _Occupancy()

    def worker(i: int) -> None:
        with coord.blob_flight(DIGEST), occupancy:
            if DIGEST not in store:  # the engine re-checks the store inside the flight
                fetches.append(i)
                time.sleep(0.05)
                store.add(DIGEST)

    _run_threads(8, worker)
    assert len(fetches) == 1
    assert occupancy.most == 1 and occupancy.entries == 8


class _ObservedCoordinator(Coordinator):
    """Signals when a caller starts waiting for someone else's image flight, so the test
    knows every request is in before the copier finishes (no timing guesses)."""

    def __init__(self, base: Coordinator) -> None:
        super().__init__(base.client, base.prefix)
        self.waiting = threading.Semaphore(0)

    def _wait_for_flight(self, key: str, holder: str, deadline: float, waited: float) -> bool:
        self.waiting.release()
        return super()._wait_for_flight(key, holder, deadline, waited)


def test_image_flight_coalesces_identical_requests(coord: Coordinator) -> None:
    callers = 5
    observed = _ObservedCoordinator(coord)
    results: list[bool] = []

    def worker(_: int) -> None:
        with observed.image_flight("docker", "library/alpine", "3.20") as copier:
            if copier:
                for _other in range(callers - 1):
                    assert observed.waiting.acquire(timeout=60)  # the others wait on us
            results.append(copier)

    _run_threads(callers, worker)
    assert sorted(results) == [False] * (callers - 1) + [True]


def test_image_flight_waiter_takes_over_from_a_failed_copier(coord: Coordinator) -> None:
    started = threading.Event()
    outcome: list[bool] = []

    def failing_copier() -> None:
        with pytest.raises(RuntimeError), coord.image_flight("docker", "x/y", "latest") as first:
            assert first
            started.set()
            time.sleep(0.5)
            raise RuntimeError("upstream broke")

    thread = threading.Thread(target=failing_copier)
    thread.start()
    assert started.wait(30)
    with coord.image_flight("docker", "x/y", "latest", blocking_timeout=60) as copier:
        outcome.append(copier)
    thread.join(30)
    assert outcome == [True]


def test_image_flight_times_out_with_lock_busy(coord: Coordinator) -> None:
    with coord.image_flight("docker", "x/z", "v1") as first:
        assert first
        with (
            pytest.raises(LockBusy),
            coord.image_flight("docker", "x/z", "v1", blocking_timeout=0.3),
        ):
            pass
