"""What ``Runtime.open`` opens from a configuration: the Coordinator when Redis is configured
(every part shares it), this process's locks otherwise, only as far as asked, and all of it
closed together, connections to the upstreams included."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from syncworker.config import Config, load_config
from syncworker.coord import Coordinator
from syncworker.engine import LocalLocks
from syncworker.errors import ConfigError, CoordError, StoreError
from syncworker.runtime import Runtime
from syncworker.store import FsStore
from syncworker.store.claim import Source
from syncworker.worker.state import close_state, worker_state
from tests.support.images import make_image
from tests.support.mirror import write_sync_config
from tests.support.ports import free_port
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

UPSTREAM = [{"urls": ["https://upstream.example"]}]


def _config(tmp_path: Path, **settings: object) -> Config:
    return load_config(write_sync_config(tmp_path, tmp_path / "store", UPSTREAM, settings=settings))


def test_without_redis_every_part_shares_this_process_locks(tmp_path: Path) -> None:
    with Runtime.open(_config(tmp_path)) as runtime:
        assert runtime.coord is None
        assert isinstance(runtime.locks, LocalLocks) and runtime.locks is runtime.locks
        assert isinstance(runtime.store, FsStore)
        mirror = runtime.mirror
        assert mirror.store is runtime.store and mirror.locks is runtime.locks
    with pytest.raises(ValueError, match="without the Mirror"):
        _ = runtime.mirror  # closed with the runtime


def test_with_redis_the_coordinator_is_the_locks_and_the_destinations_claims(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    """Two runtimes on one configuration, as two processes: a claim one destination store
    records is the other's, because the store was given the Coordinator."""
    settings = {"redis": private_redis.url, "destination": {"url": "https://mirror.example"}}
    config = _config(tmp_path, **settings)
    source = Source("upstream.example", "lib/app")
    with Runtime.open(config) as first, Runtime.open(config, upto="store") as second:
        assert isinstance(first.coord, Coordinator)
        assert first.mirror.locks is first.coord is first.coordinator
        assert first.store.claim("lib/app", source) == source
        assert second.store.claimant("lib/app") == source
    alone = _config(tmp_path, destination={"url": "https://mirror.example"})
    with Runtime.open(alone, upto="store") as third:
        assert third.store.claimant("lib/app") is None  # this process's claims only


def test_redis_alone_opens_neither_the_store_nor_the_mirror(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    with Runtime.open(_config(tmp_path, redis=private_redis.url), upto="redis") as runtime:
        runtime.coordinator.ping()
        with pytest.raises(ValueError, match="without the store"):
            _ = runtime.store


def test_redis_needed_but_not_configured_names_what_needs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYNCWORKER_REDIS_URL", raising=False)
    with pytest.raises(ConfigError, match="a Celery worker needs a Redis URL"):
        Runtime.open(_config(tmp_path), redis="a Celery worker")


def test_a_configured_redis_that_does_not_answer_fails_the_open(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(CoordError):
        Runtime.open(_config(tmp_path, redis=url))
    assert not (tmp_path / "store").exists()  # nothing was opened after it


def _connections_to(server: RegistryServer) -> int:
    """This process's open TCP connections to ``server``'s port: its socket descriptors whose
    inode the kernel's connection table lists with that remote port. Counting every socket
    of the process would count what other tests left for the garbage collector; each test
    here starts its own registries for the same reason."""
    inodes = {_socket_inode(fd) for fd in os.listdir("/proc/self/fd")} - {None}
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)  # the header
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == server.port and fields[9] in inodes:
                    count += 1
    return count


def _socket_inode(fd: str) -> str | None:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None  # the descriptor listdir itself held
    return target[len("socket:[") : -1] if target.startswith("socket:[") else None


def test_closing_the_runtime_closes_the_connections_to_the_upstreams(
    tmp_path: Path, make_registry: Callable[..., RegistryServer]
) -> None:
    upstream = make_registry()  # its own: no other test's connections to count
    push_image(upstream.url, "closing/app", "v1", make_image("closing", layers=1))
    config = load_config(
        write_sync_config(tmp_path, tmp_path / "store", [{"name": "up", "urls": [upstream.url]}])
    )
    assert _connections_to(upstream) == 0  # push_image's are closed
    with Runtime.open(config) as runtime:
        assert runtime.mirror.sync_repo("up", "closing/app").ok
        assert _connections_to(upstream) > 0  # kept alive for the next request
    assert _connections_to(upstream) == 0


def test_closing_the_runtime_closes_the_connections_to_a_registry_destination(
    tmp_path: Path, make_registry: Callable[..., RegistryServer]
) -> None:
    upstream, dest = make_registry(), make_registry()  # their own: no other test's connections
    push_image(upstream.url, "closing/dest", "v1", make_image("closing-dest", layers=1))
    registries = [{"name": "up", "urls": [upstream.url]}]
    settings = {"destination": {"url": dest.url}}
    config = load_config(
        write_sync_config(tmp_path, tmp_path / "store", registries, settings=settings)
    )
    assert _connections_to(upstream) == 0  # push_image's are closed
    with Runtime.open(config) as runtime:
        assert runtime.mirror.sync_repo("up", "closing/dest").ok
        assert _connections_to(upstream) > 0
        runtime.mirror.close()  # the upstream's connections
        assert _connections_to(upstream) == 0
        assert _connections_to(dest) > 0  # the destination's, kept for the next push
    assert _connections_to(dest) == 0


def test_a_worker_state_opens_redis_first_and_the_store_and_mirror_when_asked(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    """Built, it holds Redis alone (what a give-up in Celery's main process needs); opened,
    the store and the Mirror. A store that cannot be opened fails that call and is tried
    again on the next; threads opening together share one Mirror."""
    (tmp_path / "a-file").write_text("")
    root = tmp_path / "a-file" / "store"
    path = write_sync_config(tmp_path, root, UPSTREAM, settings={"redis": private_redis.url})
    state = worker_state(load_config(path))
    try:
        state.coord.ping()
        assert not state.runtime.has_store and not state.runtime.has_mirror
        with pytest.raises(StoreError, match="Not a directory"):
            state.open()
        (tmp_path / "a-file").unlink()
        opened: list[str] = []
        for name in ("open_store", "open_mirror"):
            _slow_and_counted(state.runtime, name, opened)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: state.open(), range(8)))
        assert opened == ["open_store", "open_mirror"], opened
        assert state.runtime.has_store and state.runtime.has_mirror
    finally:
        close_state()


def _slow_and_counted(runtime: Runtime, name: str, calls: list[str]) -> None:
    """Make ``runtime.name`` slow and append ``name`` to ``calls`` on each call: threads
    racing past an unlocked check would each open the part."""
    method = getattr(runtime, name)

    def slow(*args: Any) -> object:
        calls.append(name)
        time.sleep(0.05)
        return method(*args)

    setattr(runtime, name, slow)
