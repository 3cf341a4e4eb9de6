"""An upload to a registry destination that breaks part-way is sent again without the blob
being fetched from the upstream a second time, whatever its size: a small blob from memory,
a large one from a temporary file (engine/replay.py). Two real distribution registries; a
proxy in front of the destination cuts the first large blob upload half-way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from syncworker.engine.replay import REPLAY_LIMIT
from tests.support.cutting_proxy import CuttingProxy
from tests.support.images import make_image, make_layer
from tests.support.mirror import run_sync, write_sync_config
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.test_dest_e2e import skopeo_digest

MIB = 1 << 20


def test_a_large_blob_whose_upload_broke_is_sent_again_without_a_second_fetch(
    registry: RegistryServer, make_registry: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    repo = "dest/retry"
    big = make_layer("dest-retry-big", size=3 * REPLAY_LIMIT, compresslevel=0)
    assert big.size > REPLAY_LIMIT
    image = make_image("dest-retry", layers=0, base=[big])
    push_image(registry.url, repo, "v1", image)
    dest = make_registry()
    with CuttingProxy(dest.url, larger_than=REPLAY_LIMIT) as proxy:
        entry = {"urls": [registry.url], "content": [{"prefix": repo}]}
        settings = {"destination": {"url": proxy.url}}
        config = write_sync_config(tmp_path, tmp_path / "unused", [entry], settings=settings)
        fetched = registry.blob_gets()
        run = run_sync(config)
    assert run.code == 0, run.output
    assert proxy.cut == 1, run.output
    assert registry.blob_gets() - fetched == 2  # the layer and the config, once each
    assert skopeo_digest(dest.url, repo, "v1") == image.digest
