"""Fixtures shared by the coord tests: Coordinators on the real Redis and embedded.

Test modules load them with ``pytest_plugins = ["tests.test_coord_support"]``. The Redis
itself comes from conftest's ``redis_url``; every test gets its own key prefix
(``redis_prefix``), deleted afterwards, so tests never see each other's keys.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from syncworker.coord import Coordinator

__all__ = ["coord", "real_coord"]


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)


def _open(kind: str, redis_url: str, prefix: str) -> Coordinator:
    if kind == "embedded":
        return Coordinator.embedded(prefix=prefix)
    return Coordinator.from_url(redis_url, prefix=prefix)


@pytest.fixture
def real_coord(redis_url: str, redis_prefix: str) -> Iterator[Coordinator]:
    """A Coordinator on the real Redis, under a prefix of its own."""
    coordinator = _open("redis", redis_url, redis_prefix.rstrip(":"))
    yield coordinator
    _delete_prefix(coordinator.client, coordinator.prefix)
    coordinator.close()


@pytest.fixture(params=["redis", "embedded"])
def coord(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> Iterator[Coordinator]:
    """The same behaviour, checked on a real Redis and on the embedded fakeredis."""
    coordinator = _open(request.param, redis_url, redis_prefix.rstrip(":"))
    yield coordinator
    _delete_prefix(coordinator.client, coordinator.prefix)
    coordinator.close()
