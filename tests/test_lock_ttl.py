"""A Redis repository lock and its TTL (``syncworker.lockTtl``, set short here): renewed
while its holder runs, however long; and a holder that lost it anyway (paused past the TTL,
another worker holding the repository since) deletes nothing more, and a sync lists nothing
more in index.json. S3 on moto, real Redis, real registry, gc and sync in processes of
their own."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml

from syncworker.config import load_config
from syncworker.coord.keys import Keys
from syncworker.errors import LockBusy
from syncworker.oci import Digest
from syncworker.runtime import Runtime
from syncworker.store import indexdoc
from tests.support.gc_pipe import gc_on_a_pipe
from tests.support.images import make_image, make_layer
from tests.support.mirror import write_sync_config
from tests.support.ports import wait_until
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.support.s3_server import S3Server, s3_server
from tests.support.stalling_proxy import StallingProxy
from tests.test_check import run_check

__all__ = ["s3_server"]  # the session fixture, imported for pytest

REPO = "ttl/app"
TTL = "1s"
# Blobs no index.json reaches; gc reports each deletion into a one-page pipe, so it
# is paused a few dozen deletions in, never at the end.
GARBAGE = 150
WAIT_SECONDS = 60.0
# The gc test's upstream: nothing answers there, and gc asks no upstream.
NO_UPSTREAM = "http://127.0.0.1:9"


def _config(
    tmp_path: Path, redis_url: str, s3: S3Server | None = None, upstream: str = NO_UPSTREAM
) -> Path:
    settings = {"redis": redis_url, "lockTtl": TTL}
    registries = [{"urls": [upstream], "content": [{"prefix": "ttl/**"}]}]
    config = write_sync_config(tmp_path, tmp_path / "store", registries, settings=settings)
    if s3 is not None:
        doc = yaml.safe_load(config.read_text())
        bucket = s3.new_bucket()
        doc["storage"] = {"rootDirectory": "/m", "storageDriver": s3.driver(bucket, "/m")}
        config.write_text(yaml.safe_dump(doc))
    return config


def test_a_lock_held_for_several_ttls_is_renewed_and_stays_its_holders(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    config = load_config(_config(tmp_path, private_redis.url))
    with (
        Runtime.open(config, upto="redis") as holder,
        Runtime.open(config, upto="redis") as other,
    ):
        assert holder.coord is not None and other.coord is not None
        with holder.coord.repo_lock(REPO) as hold:
            time.sleep(3.5)  # three and a half TTLs
            hold.ensure()
            with pytest.raises(LockBusy), other.coord.repo_lock(REPO, blocking_timeout=0):
                pass


def _garbage_blobs(config: Path) -> int:
    """Blobs of ``REPO`` in the store, filled with GARBAGE unreferenced ones first."""
    with Runtime.open(load_config(config), upto="store") as runtime:
        store = runtime.store
        return len(store.blob_ages(REPO))  # type: ignore[attr-defined]


def test_a_gc_that_lost_its_lock_stops_deleting(
    private_redis: RedisServer, s3_server: S3Server, tmp_path: Path
) -> None:
    config = _config(tmp_path, private_redis.url, s3_server)
    with Runtime.open(load_config(config), upto="store") as runtime:
        store = runtime.store
        for n in range(GARBAGE):
            data = f"garbage {n}".encode()
            store.put_blob(REPO, Digest.of(data), len(data), [data])
        store.backend.put(  # type: ignore[attr-defined]
            f"{REPO}/index.json", indexdoc.dump_index(indexdoc.new_index())
        )
    gc, out = gc_on_a_pipe(config, stderr=subprocess.STDOUT)
    client = redis.Redis.from_url(private_redis.url)
    key = Keys("syncworker").repo_lock(REPO)
    try:
        with out:
            assert out.readline().startswith(b"removed "), "gc ended early"
            gc.send_signal(signal.SIGSTOP)  # paused past its lock's TTL...
            assert wait_until(lambda: client.get(key) is None, timeout=WAIT_SECONDS)
            client.set(key, "a sync of another worker", ex=600)  # ...which a sync then took
            gc.send_signal(signal.SIGCONT)
            output = out.read().decode()
        assert gc.wait(timeout=WAIT_SECONDS) == 1, output
    finally:
        if gc.poll() is None:
            gc.send_signal(signal.SIGKILL)
            gc.wait()
    assert f"SKIPPED {REPO}: lock {key} expired while held" in output, output
    left = _garbage_blobs(config)
    removed = 1 + output.count(f"removed {REPO}@")  # the first line was read above
    assert 0 < left < GARBAGE, output
    assert left + removed == GARBAGE, output  # every deletion reported


SYNCED = "ttl/sync"
BIG_LAYER = 64 << 10  # held by the proxy after STALL_AFTER bytes
STALL_AFTER = 16 << 10


def _without_redis(config: Path) -> Path:
    """The same store without Redis: ``syncworker check`` then checks in this process."""
    doc = yaml.safe_load(config.read_text())
    del doc["syncworker"]["redis"]
    local = config.with_name("check.yaml")
    local.write_text(yaml.safe_dump(doc))
    return local


def test_a_sync_that_lost_its_lock_lists_nothing_over_what_a_gc_deleted(
    private_redis: RedisServer, s3_server: S3Server, registry: RegistryServer, tmp_path: Path
) -> None:
    shared, big = make_layer("ttl-shared", size=256), make_layer("ttl-big", size=BIG_LAYER)
    image = make_image("ttl-sync", base=[shared, big], layers=0)
    push_image(registry.url, SYNCED, "v1", image)
    with StallingProxy(registry.url, big.digest, STALL_AFTER) as proxy:
        config = _config(tmp_path, private_redis.url, s3_server, upstream=proxy.url)
        sync = subprocess.Popen(
            [sys.executable, "-m", "syncworker", "sync", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(private_redis.url)
        key = Keys("syncworker").repo_lock(SYNCED)
        with Runtime.open(load_config(config), upto="store") as runtime:
            store = runtime.store
            try:
                stored = wait_until(
                    lambda: (
                        proxy.reached.is_set()
                        and store.has_blob(SYNCED, Digest.parse(shared.digest))
                    ),
                    timeout=WAIT_SECONDS,
                    alive=lambda: sync.poll() is None,
                )
                assert stored, "the sync never held the big layer with the shared one stored"
                sync.send_signal(signal.SIGSTOP)  # paused past its lock's TTL...
                assert wait_until(lambda: client.get(key) is None, timeout=WAIT_SECONDS)
                # ...which a gc then took, deleting the blob no index.json listed.
                client.set(key, "a gc of another worker", ex=600)
                store.delete_blob(SYNCED, Digest.parse(shared.digest))
                sync.send_signal(signal.SIGCONT)
                proxy.release()
                output, _ = sync.communicate(timeout=WAIT_SECONDS)
            finally:
                if sync.poll() is None:
                    sync.send_signal(signal.SIGKILL)
                    sync.wait()
            assert store.index(SYNCED) == []  # v1 not listed over the tree it lost
    assert sync.returncode == 1, output
    assert f"lock {key} expired while held" in output.decode(), output
    check = run_check(_without_redis(config))
    assert check.code == 0, check.output
