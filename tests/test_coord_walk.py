"""Catalog walk state: exclusive begin, cursor compare-and-set, at-most-once fan-out."""

from __future__ import annotations

import threading

from syncworker.coord import FINISHED, RUNNING, Coordinator

# The shared fixtures: coord (real Redis and fakeredis), real_coord.
pytest_plugins = ["tests.test_coord_support"]


def _together(count: int, call: object) -> list[object]:
    """Run `call(i)` on `count` threads released at once; results by thread index."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def body(i: int) -> None:
        barrier.wait()
        results[i] = call(i)  # type: ignore[operator]

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_begin_walk_is_exclusive(coord: Coordinator) -> None:
    won = _together(10, lambda i: coord.begin_walk("docker", f"run-{i}"))
    assert won.count(True) == 1
    owner = f"run-{won.index(True)}"
    assert coord.current_walk("docker") == owner
    assert coord.begin_walk("quay", "run-q")  # walks of other registries are independent


def test_end_walk_only_by_its_owner(coord: Coordinator) -> None:
    assert coord.begin_walk("docker", "run-1")
    coord.advance_cursor("docker", None, "library/m")
    assert not coord.end_walk("docker", "run-2")
    assert coord.current_walk("docker") == "run-1" and coord.cursor("docker") == "library/m"
    assert coord.end_walk("docker", "run-1")
    assert coord.current_walk("docker") is None and coord.cursor("docker") is None
    assert coord.begin_walk("docker", "run-2")


def test_new_walk_starts_from_the_top(coord: Coordinator) -> None:
    assert coord.begin_walk("docker", "run-1")
    assert coord.advance_cursor("docker", None, "library/m")
    coord.client.delete(f"{coord.prefix}:walk:docker")  # the walk marker expired
    assert coord.begin_walk("docker", "run-2")
    assert coord.cursor("docker") is None


def test_cursor_compare_and_set(coord: Coordinator) -> None:
    assert coord.begin_walk("docker", "run-1")
    assert coord.cursor("docker") is None
    assert coord.advance_cursor("docker", None, "library/alpine")
    # A duplicate delivery of the first page read None: stale, refused, cursor unchanged.
    assert not coord.advance_cursor("docker", None, "library/alpine")
    assert not coord.advance_cursor("docker", "library/zzz", "library/other")
    assert coord.cursor("docker") == "library/alpine"
    assert coord.advance_cursor("docker", "library/alpine", "library/nginx")
    assert coord.advance_cursor("docker", "library/nginx", None)  # end of the catalog
    assert coord.cursor("docker") is None


def test_concurrent_advances_only_one_wins(coord: Coordinator) -> None:
    assert coord.begin_walk("docker", "run-1")
    assert coord.advance_cursor("docker", None, "page-1")
    won = _together(8, lambda i: coord.advance_cursor("docker", "page-1", f"page-2-{i}"))
    assert won.count(True) == 1
    assert coord.cursor("docker") == f"page-2-{won.index(True)}"


def test_mark_enqueued_at_most_once(coord: Coordinator) -> None:
    run_id = coord.start_run("docker")
    repos = [f"library/repo{i}" for i in range(20)]
    marks = _together(5, lambda i: [coord.mark_enqueued(run_id, repo) for repo in repos])
    for column in zip(*marks, strict=True):  # type: ignore[call-overload]
        assert list(column).count(True) == 1
    assert coord.mark_enqueued("another-run", "library/repo0")  # per run, not forever
    assert coord.client.ttl(f"{coord.prefix}:run:{run_id}:repos") > 0


def test_walked_run_finishes_when_last_repo_is_counted(coord: Coordinator) -> None:
    run_id = coord.start_run("docker")
    assert coord.begin_walk("docker", run_id)
    coord.incr(run_id, repos_total=2)
    coord.incr(run_id, repos_done=1)
    assert coord.end_walk("docker", run_id)
    status = coord.run_status(run_id)
    assert status is not None and status.state == RUNNING  # one repo still syncing
    coord.incr(run_id, repos_failed=1)
    status = coord.run_status(run_id)
    assert status is not None and status.state == FINISHED and status.finished is not None


def test_run_whose_repos_finish_before_the_walk_ends(coord: Coordinator) -> None:
    run_id = coord.start_run("docker")
    assert coord.begin_walk("docker", run_id)
    coord.incr(run_id, repos_total=1)
    coord.incr(run_id, repos_done=1)
    status = coord.run_status(run_id)
    assert status is not None and status.state == RUNNING  # more pages may come
    coord.end_walk("docker", run_id)
    status = coord.run_status(run_id)
    assert status is not None and status.state == FINISHED


def test_a_redelivered_count_cannot_finish_the_run_early(coord: Coordinator) -> None:
    run_id = coord.start_run("docker")
    assert coord.begin_walk("docker", run_id)
    coord.incr(run_id, repos_total=2)
    coord.end_walk("docker", run_id)
    assert coord.incr(run_id, once_for="library/a", repos_done=1, images_copied=3)
    # The same sync_repo redelivered after it counted (killed before its ack).
    assert not coord.incr(run_id, once_for="library/a", repos_done=1, images_copied=3)
    status = coord.run_status(run_id)
    assert status is not None and status.state == RUNNING and status.done == 1
    assert status.counters["images_copied"] == 3
    assert coord.incr(run_id, once_for="library/b", repos_failed=1)
    status = coord.run_status(run_id)
    assert status is not None and status.state == FINISHED
    # A finished run keeps no per-repository marks, and a late redelivery counts nothing.
    assert not coord.client.exists(f"{coord.prefix}:run:{run_id}:repos")
    assert not coord.incr(run_id, once_for="library/b", repos_failed=1)
    status = coord.run_status(run_id)
    assert status is not None and status.done == 2
