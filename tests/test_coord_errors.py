"""Redis unreachable: our CoordError, naming the URL without its password."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

import pytest
import redis

from syncworker.coord import Coordinator
from syncworker.coord.redisclient import redact
from syncworker.errors import CoordError, SyncworkerError
from syncworker.retry import classify
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

PASSWORD = "s3cret-Pa55"


@pytest.fixture(scope="module")
def down() -> Coordinator:
    """A Coordinator pointed at a loopback port nothing listens on."""
    return Coordinator.from_url(f"redis://worker:{PASSWORD}@127.0.0.1:{free_port()}/0")


CALLS: dict[str, Callable[[Coordinator], object]] = {
    "ping": lambda c: c.ping(),
    "start_run": lambda c: c.start_run("docker"),
    "begin_walk": lambda c: c.begin_walk("docker", "run-1"),
    "repo_lock": lambda c: c.repo_lock("a/b").__enter__(),
    "image_flight": lambda c: c.image_flight("docker", "a/b", "v1").__enter__(),
}


@pytest.mark.parametrize("call", list(CALLS), ids=list(CALLS))
def test_unreachable_redis_raises_coord_error(down: Coordinator, call: str) -> None:
    with pytest.raises(CoordError) as caught:
        CALLS[call](down)
    error = caught.value
    assert isinstance(error, SyncworkerError) and classify(error)
    assert not isinstance(error, redis.RedisError)
    assert "127.0.0.1" in str(error) and "worker:***@" in str(error)
    whole = "".join(traceback.format_exception(error))
    assert PASSWORD not in whole and PASSWORD not in repr(down)


def test_client_description_never_has_the_password() -> None:
    client = redis.Redis(host="127.0.0.1", port=free_port(), password=PASSWORD)
    coordinator = Coordinator(client)
    with pytest.raises(CoordError) as caught:
        coordinator.ping()
    assert PASSWORD not in str(caught.value)
    assert str(client.connection_pool.connection_kwargs["port"]) in str(caught.value)


def test_bad_url_is_a_config_error_without_password() -> None:
    with pytest.raises(SyncworkerError) as caught:
        Coordinator.from_url(f"http://user:{PASSWORD}@127.0.0.1/0")
    assert PASSWORD not in str(caught.value)


def test_redact() -> None:
    assert redact("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redact("token=abc&x=1 password=zz") == "token=***&x=1 password=***"
    assert redact("Authorization: Basic dXNlcjpwdw==") == "Authorization: Basic ***"


def test_redis_restart_mid_lock(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarted (no persistence) under a holder: CoordError while it is down, the
    holder's exit only warns, and the same Coordinator works again once Redis is back."""
    coordinator = Coordinator.from_url(private_redis.url, prefix="restart")
    run_id = coordinator.start_run("docker")
    held = coordinator.repo_lock("library/alpine", ttl=1.0)
    with caplog.at_level(logging.WARNING, logger="syncworker.coord.redislocks"), held:
        private_redis.kill()
        with pytest.raises(CoordError):
            coordinator.ping()
        private_redis.start()
    assert caplog.records, "losing the lock must be logged"
    coordinator.ping()
    assert coordinator.run_status(run_id) is None  # state without persistence is gone, not an error
    with coordinator.repo_lock("library/alpine", blocking_timeout=0):
        pass
    coordinator.close()


def test_a_refused_login_says_so_not_unreachable(private_redis: RedisServer) -> None:
    """A wrong user or password reaches Redis, which refuses it: the message says that,
    names the URL without the password, and shows no password."""
    url = private_redis.url.replace("redis://", f"redis://nobody:{PASSWORD}@")
    with pytest.raises(CoordError) as caught:
        Coordinator.from_url(url).ping()
    where = private_redis.url.replace("redis://", "redis://nobody:***@")
    assert str(caught.value).startswith(f"Redis at {where} refused the login: "), caught.value
    assert PASSWORD not in str(caught.value)
