"""``syncworker sync`` with a Redis URL: processes share the repository locks and blob
single-flights of the Coordinator, so two of them at once still fetch each blob once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.support.corpus import seed_many
from tests.support.mirror import check_store, layout_tags, write_sync_config
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer


def test_two_sync_processes_on_redis_fetch_each_blob_once(
    make_registry: Callable[..., RegistryServer], private_redis: RedisServer, tmp_path: Path
) -> None:
    server = make_registry()
    corpus = seed_many(server, repos=6, tags=3, layers=3, shared_layers=2, prefix="pair")
    unique = {blob for digests in corpus.blobs.values() for blob in digests}
    root = tmp_path / "store"
    config = write_sync_config(
        tmp_path, root, [{"urls": [server.url]}], settings={"redis": private_redis.url}
    )
    command = [sys.executable, "-m", "syncworker", "sync", "-q", "-c", str(config)]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=240) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, (out + err).decode()
    assert server.blob_gets() == len(unique)
    assert layout_tags(root) == corpus.tags
    check_store(root)
