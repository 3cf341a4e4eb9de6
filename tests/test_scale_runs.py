"""What a run costs Redis: commands per repository, and what finished runs keep.

On a private redis-server, so ``INFO commandstats`` (which counts the commands Lua scripts
run, too) sees only these tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from syncworker.coord import FINISHED, Coordinator, RunFailure
from tests.support.redis_server import RedisServer


@pytest.fixture
def stats_coord(private_redis: RedisServer) -> Iterator[Coordinator]:
    coord = Coordinator.from_url(private_redis.url)
    yield coord
    coord.close()


def _commands(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()})


def _measured(client: redis.Redis) -> Counter[str]:
    """Commands since the last call (the INFO and CONFIG calls themselves left out)."""
    found = _commands(client)
    client.config_resetstat()
    del found["info"], found["config|resetstat"]
    return found


def _walked_run(coord: Coordinator, repos: list[str]) -> str:
    run_id = coord.start_run("docker")
    assert coord.begin_walk("docker", run_id)
    assert coord.mark_enqueued(run_id, *repos) == len(repos)
    coord.end_walk("docker", run_id)
    return run_id


def _run_bytes(client: redis.Redis, run_id: str) -> int:
    keys = list(client.scan_iter(f"syncworker:run:{run_id}*"))
    return sum(int(client.memory_usage(key, samples=0) or 0) for key in keys)


def test_counting_a_repository_is_one_script_touching_only_changed_counters(
    stats_coord: Coordinator,
) -> None:
    client = stats_coord.client
    run_id = _walked_run(stats_coord, ["lib/a", "lib/b", "lib/c"])
    assert stats_coord.incr(run_id, once_for="lib/c", repos_done=1)  # loads the script
    _measured(client)
    noop = dict.fromkeys(("images_copied", "images_failed", "blobs_fetched", "bytes"), 0)
    assert stats_coord.incr(run_id, once_for="lib/a", repos_done=1, images_skipped=3, **noop)
    counted = _measured(client)
    assert counted["evalsha"] == 1
    assert counted["hincrby"] == 2  # repos_done, images_skipped: the zeros touch nothing
    assert sum(counted.values()) <= 6

    failure = RunFailure("lib/b", "v1", "HTTP 500 from upstream")
    assert stats_coord.incr(run_id, once_for="lib/b", failures=[failure], repos_failed=1)
    assert _measured(client)["evalsha"] == 1  # the failure went with the count
    status = stats_coord.run_status(run_id)
    assert status is not None and status.state == FINISHED
    assert status.failures == [failure]
    assert status.counters["images_skipped"] == 3 and status.counters["bytes"] == 0


def test_a_page_is_checked_and_marked_in_one_command_each(stats_coord: Coordinator) -> None:
    client = stats_coord.client
    run_id = stats_coord.start_run("docker")
    page = [f"lib/r{number:04d}" for number in range(1000)]
    stats_coord.mark_enqueued(stats_coord.start_run("docker"), "lib/other")  # loads the script
    _measured(client)
    assert stats_coord.not_enqueued(run_id, page) == page
    assert stats_coord.mark_enqueued(run_id, *page[:600]) == 600
    assert stats_coord.not_enqueued(run_id, page) == page[600:]
    assert stats_coord.mark_enqueued(run_id, *page) == 400  # a redelivered page
    calls = _measured(client)
    assert calls["hmget"] == 2 and calls["evalsha"] == 2
    status = stats_coord.run_status(run_id)
    assert status is not None and status.total == 1000


def test_finished_runs_keep_the_same_bytes_however_many_repositories(
    stats_coord: Coordinator,
) -> None:
    client = stats_coord.client
    held = []
    for size in (10, 3000):
        repos = [f"lib/r{number:05d}" for number in range(size)]
        run_id = _walked_run(stats_coord, repos)
        running = _run_bytes(client, run_id)
        for repo in repos:
            stats_coord.incr(run_id, once_for=repo, repos_done=1, images_skipped=1)
        status = stats_coord.run_status(run_id)
        assert status is not None and status.state == FINISHED and status.done == size
        assert not client.exists(f"syncworker:run:{run_id}:repos")
        held.append(_run_bytes(client, run_id))
        assert held[-1] < running
        # Counted once per run, even after the marks are gone.
        assert not stats_coord.incr(run_id, once_for=repos[0], repos_done=1)
    small, large = held
    assert large - small <= 32  # only the counters' digits differ
    assert large < 1024


def test_uncounted_lists_what_was_sent_and_not_counted(stats_coord: Coordinator) -> None:
    run_id = stats_coord.start_run("docker")
    repos = [f"lib/r{number:04d}" for number in range(2500)]
    stats_coord.mark_enqueued(run_id, *repos)
    for repo in repos[::2]:
        stats_coord.incr(run_id, once_for=repo, repos_done=1)
    assert stats_coord.uncounted(run_id) == repos[1::2]
