"""A run's live counts (repositories in flight, counted as their images end) and the runs'
totals per registry, on the real Redis (and fakeredis); the worker side that writes live
counts at most once a second, with a clock the test moves."""

from __future__ import annotations

import pytest

from syncworker.coord import FAILED, FINISHED, Coordinator, RunFailure
from syncworker.observe.live import LIVE_INTERVAL, LiveCounts
from syncworker.runs.sweep import Resend, stalled

# The shared fixtures: coord (real Redis and fakeredis), real_coord.
pytest_plugins = ["tests.test_coord_support"]


def _walked_run(coord: Coordinator, *repos: str) -> str:
    run_id = coord.start_run("docker")
    assert coord.begin_walk("docker", run_id)
    coord.mark_enqueued(run_id, *repos)
    coord.end_walk("docker", run_id)
    return run_id


def _images(coord: Coordinator, run_id: str) -> tuple[int, int, int]:
    status = coord.run_status(run_id)
    assert status is not None
    c = status.counters
    return c["images_copied"], c["images_skipped"], c["images_failed"]


def test_live_counts_add_up_until_the_count_replaces_them(coord: Coordinator) -> None:
    run_id = _walked_run(coord, "lib/a", "lib/b")
    assert coord.note_live(run_id, "lib/a", {"images_copied": 2, "bytes": 100})
    assert coord.note_live(run_id, "lib/b", {"images_skipped": 1})
    assert coord.note_live(run_id, "lib/a", {"images_copied": 3, "bytes": 150})  # rewritten
    status = coord.run_status(run_id)
    assert status is not None and status.in_flight == 2
    assert status.counters["images_copied"] == 3 and status.counters["bytes"] == 150
    assert status.live == {"images_copied": 3, "images_skipped": 1, "images_failed": 0,
                           "bytes": 150}  # fmt: skip

    assert coord.incr(run_id, once_for="lib/a", clear_live=True, repos_done=1, images_copied=4)
    assert _images(coord, run_id) == (4, 1, 0)  # a's result, b's counts so far
    assert not coord.note_live(run_id, "lib/a", {"images_copied": 9})  # a late duplicate
    assert _images(coord, run_id) == (4, 1, 0)


def test_a_killed_deliverys_counts_never_add_to_the_result(coord: Coordinator) -> None:
    run_id = _walked_run(coord, "lib/a", "lib/b")
    coord.note_live(run_id, "lib/a", {"images_copied": 5})  # then its worker died
    # The redelivery ends before its first write, so it has no live counts to clear.
    assert coord.incr(run_id, once_for="lib/a", repos_done=1, images_copied=3, images_skipped=5)
    assert _images(coord, run_id) == (3, 5, 0)
    status = coord.run_status(run_id)
    assert status is not None and status.in_flight == 0


def test_a_finished_run_keeps_no_live_counts(coord: Coordinator) -> None:
    run_id = _walked_run(coord, "lib/a", "lib/b")
    coord.note_live(run_id, "lib/b", {"images_copied": 1})
    coord.note_live(run_id, "lib/a", {"images_copied": 1})
    coord.incr(run_id, once_for="lib/a", repos_done=1, images_copied=1)
    coord.incr(run_id, once_for="lib/b", clear_live=True, repos_done=1, images_copied=1)
    status = coord.run_status(run_id)
    assert status is not None and status.state == FINISHED and status.live == {}
    assert not coord.client.exists(coord._keys.run_live(run_id))
    assert not coord.note_live(run_id, "lib/a", {"images_copied": 1})
    assert not coord.note_live("gone", "lib/a", {"images_copied": 1})
    assert coord.client.exists(*coord._keys.run_keys("gone")) == 0
    with pytest.raises(ValueError, match="repos_done"):
        coord.note_live(run_id, "lib/a", {"repos_done": 1})


def test_runs_are_totalled_per_registry_once_each(coord: Coordinator) -> None:
    ok = _walked_run(coord, "lib/a")
    assert coord.start_run("docker", ok) == ok  # a retried trigger: no second start
    coord.incr(ok, once_for="lib/a", repos_done=1)
    coord.incr(ok, once_for="lib/a", repos_done=1)  # a redelivery: no second end
    failed = _walked_run(coord, "lib/b")
    coord.incr(failed, once_for="lib/b", failures=[RunFailure("lib/b", None, "500")],
               repos_failed=1)  # fmt: skip
    stopped = coord.start_run("quay")
    coord.finish_run(stopped, FAILED)
    coord.finish_run(stopped)

    totals = coord.run_totals()
    assert set(totals) == {"docker", "quay"}
    docker, quay = totals["docker"], totals["quay"]
    assert (docker.started, docker.finished_ok, docker.finished_failed) == (2, 1, 1)
    assert (quay.started, quay.finished_ok, quay.finished_failed) == (1, 0, 1)
    ok_status = coord.run_status(ok)
    assert ok_status is not None and docker.last_ok == ok_status.finished
    assert quay.last_ok is None


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_repository_writes_at_most_once_an_interval(real_coord: Coordinator) -> None:
    run_id = _walked_run(real_coord, "lib/a", "lib/quick")
    clock = _Clock()
    live = LiveCounts(real_coord, clock)
    with live.track("docker", "lib/quick", run_id) as quick:
        live.image_done("docker", "lib/quick", "unchanged", 0)
    assert not quick.written  # ended within the interval: nothing written
    with live.track("docker", "lib/a", run_id) as tracked:
        live.image_done("docker", "lib/a", "copied", 10)
        live.image_done("docker", "lib/other", "copied", 10)  # not tracked: not counted
        assert _images(real_coord, run_id) == (0, 0, 0)
        clock.now += LIVE_INTERVAL
        live.image_done("docker", "lib/a", "failed", 0)
        assert _images(real_coord, run_id) == (1, 0, 1)
        live.image_done("docker", "lib/a", "copied", 5)  # within the interval: kept back
        assert _images(real_coord, run_id) == (1, 0, 1)
        clock.now += LIVE_INTERVAL
        live.image_done("docker", "lib/a", "unchanged", 0)
        status = real_coord.run_status(run_id)
        assert status is not None and status.counters["bytes"] == 15
    assert tracked.written
    live.image_done("docker", "lib/a", "copied", 10)  # after the sync: no longer tracked
    assert _images(real_coord, run_id) == (2, 1, 1)


def test_a_run_moving_inside_a_repository_is_not_swept(coord: Coordinator) -> None:
    run_id = _walked_run(coord, "lib/a")
    mark, _ = stalled(coord, "docker", run_id, None)
    coord.note_live(run_id, "lib/a", {"images_copied": 1})
    moved, resend = stalled(coord, "docker", run_id, mark)
    assert moved != mark and resend == Resend()
    _, resend = stalled(coord, "docker", run_id, moved)  # then nothing for an interval
    assert resend.repos == ["lib/a"]
