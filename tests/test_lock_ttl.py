"""A Redis repository lock and its TTL (``syncworker.lockTtl``, set short here): renewed
while its holder runs, however long; and a holder that lost it anyway (paused past the TTL,
another worker holding the repository since) deletes nothing more. S3 on moto, real Redis,
gc in a process of its own."""

from __future__ import annotations

import fcntl
import os
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
from tests.support.mirror import write_sync_config
from tests.support.ports import wait_until
from tests.support.redis_server import RedisServer
from tests.support.s3_server import S3Server, s3_server

__all__ = ["s3_server"]  # the session fixture, imported for pytest

REPO = "ttl/app"
TTL = "1s"
# Blobs no index.json reaches; gc reports each deletion into a pipe of PIPE_BYTES, so it
# is paused a few dozen deletions in, never at the end.
GARBAGE = 150
PIPE_BYTES = 4096
WAIT_SECONDS = 60.0


def _config(tmp_path: Path, redis_url: str, s3: S3Server | None = None) -> Path:
    settings = {"redis": redis_url, "lockTtl": TTL}
    registries = [{"urls": ["http://127.0.0.1:9"]}]
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
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    gc = subprocess.Popen(
        [sys.executable, "-m", "syncworker", "gc", "-c", str(config), "--grace", "0s"],
        stdout=write,
        stderr=subprocess.STDOUT,
    )
    os.close(write)
    client = redis.Redis.from_url(private_redis.url)
    key = Keys("syncworker").repo_lock(REPO)
    try:
        with os.fdopen(read, "rb") as out:
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
