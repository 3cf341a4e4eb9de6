"""Fixtures shared by the coord tests: Coordinators on the real Redis and on fakeredis.

Test modules load them with ``pytest_plugins = ["tests.test_coord_support"]``. The Redis
itself comes from conftest's ``redis_url``; every test gets its own key prefix
(``redis_prefix``), deleted afterwards, so tests never see each other's keys. fakeredis
(with lupa for the Lua scripts) is a test dependency only: nothing at run time uses it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import fakeredis
import pytest
import redis

from syncworker.coord import Coordinator

__all__ = ["coord", "fake_coord", "real_coord"]


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)


@functools.cache
def _fake_server() -> fakeredis.FakeServer:
    """One in-memory server for the session (it loads its command table when created)."""
    return fakeredis.FakeServer()


@pytest.fixture
def real_coord(redis_url: str, redis_prefix: str) -> Iterator[Coordinator]:
    """A Coordinator on the real Redis, under a prefix of its own."""
    coordinator = Coordinator.from_url(redis_url, prefix=redis_prefix.rstrip(":"))
    yield coordinator
    _delete_prefix(coordinator.client, coordinator.prefix)
    coordinator.close()


@pytest.fixture
def fake_coord(redis_prefix: str) -> Iterator[Coordinator]:
    """A Coordinator on fakeredis, under a prefix of its own."""
    client = fakeredis.FakeRedis(server=_fake_server())
    coordinator = Coordinator(client, prefix=redis_prefix.rstrip(":"), where="fakeredis")
    yield coordinator
    _delete_prefix(coordinator.client, coordinator.prefix)
    coordinator.close()


@pytest.fixture(params=["redis", "fakeredis"])
def coord(request: pytest.FixtureRequest) -> Coordinator:
    """The same behaviour, checked on a real Redis and on fakeredis."""
    fixture = "real_coord" if request.param == "redis" else "fake_coord"
    coordinator: Coordinator = request.getfixturevalue(fixture)
    return coordinator
