"""The beat lock against a real Redis (shared: keys under this test's prefix): one holder at
a time, a new token per holding, and no schedule write from a process that lost it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from syncworker.worker.leader import Leadership


@pytest.fixture
def client(redis_url: str, redis_prefix: str) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(redis_url, decode_responses=True)
    yield made
    for key in made.scan_iter(f"{redis_prefix}*"):
        made.delete(key)
    made.close()


def test_one_holder_and_a_new_token_each_time(client: redis.Redis, redis_prefix: str) -> None:
    first = Leadership(client, f"{redis_prefix}lock", timeout=30)
    second = Leadership(client, f"{redis_prefix}lock", timeout=30)
    assert first.hold() and not second.hold()
    token = first.token
    assert first.hold() and first.token == token  # renewed, same holding
    assert 0 < client.pttl(f"{redis_prefix}lock") <= 30_000
    first.release()
    assert first.token is None and second.hold() and second.token != token


def test_a_process_that_lost_the_lock_writes_nothing(
    client: redis.Redis, redis_prefix: str
) -> None:
    keys = f"{redis_prefix}entry", f"{redis_prefix}schedule"
    lost = Leadership(client, f"{redis_prefix}lock", timeout=30)
    assert lost.hold() and lost.write_if_held(*keys, meta="m1", score=1.0)
    client.delete(f"{redis_prefix}lock")  # expired, or Redis restarted empty
    taker = Leadership(client, f"{redis_prefix}lock", timeout=30)
    assert taker.hold()
    assert not lost.write_if_held(*keys, meta="m2", score=2.0)
    assert lost.token is None and not lost.hold()
    assert client.hget(keys[0], "meta") == "m1"
    lost.release()  # not its lock: left alone
    assert client.get(f"{redis_prefix}lock") == taker.token
