"""``syncworker check --repair`` removes and rewrites content: killed part-way it leaves
nothing half-written reachable and the next repair finishes the work; beside a
``syncworker sync`` of the same repository in another process (locks in Redis) both end
with every tree whole."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import DEADLINE, ROOT, SYNCWORKER, wait_for
from tests.support.images import make_image, make_layer
from tests.support.mirror import SKOPEO_READABLE, check_store, run_sync, temporaries
from tests.support.mirror import write_sync_config as sync_config
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.support.stalling_proxy import StallingProxy
from tests.test_check import blob_path, corrupt, run_check, skopeo_copy

MIB = 1 << 20


def _config(tmp_path: Path, url: str, **settings: Any) -> Path:
    registries = [{"name": "up", "urls": [url], "content": [{"prefix": "crash/**"}]}]
    return sync_config(
        tmp_path, tmp_path / "store", registries, settings={**SKOPEO_READABLE, **settings}
    )


def _point_at(config: Path, url: str) -> None:
    """The same registry (same name, same content rules) reached through ``url``."""
    doc = yaml.safe_load(config.read_text())
    doc["extensions"]["sync"]["registries"][0]["urls"] = [url]
    config.write_text(yaml.safe_dump(doc))


def _spawn(config: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*SYNCWORKER, *args, "-c", str(config)], cwd=ROOT, stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def test_a_repair_killed_mid_blob_leaves_nothing_half_written_and_the_next_one_finishes(
    registry: RegistryServer, tmp_path: Path
) -> None:
    repo = "crash/killed"
    big = make_layer((tmp_path.name, "big"), size=8 * MIB)
    image = make_image((tmp_path.name, "img"), base=[big], layers=1)
    push_image(registry.url, repo, "v1", image)
    config = _config(tmp_path, registry.url)
    assert run_sync(config).code == 0
    root = tmp_path / "store"
    corrupt(blob_path(root, repo, big.digest))
    small = image.blobs[-1].digest
    blob_path(root, repo, small).unlink()

    with StallingProxy(registry.url, big.digest, after=4 * MIB) as proxy:
        _point_at(config, proxy.url)
        repair = _spawn(config, "check", "--deep", "--repair", log=tmp_path / "repair.log")
        wait_for("the repair to be mid-blob", lambda: any(
            p.stat().st_size >= MIB for p in temporaries(root)
        ))  # fmt: skip
        os.killpg(repair.pid, signal.SIGKILL)
        repair.wait(timeout=DEADLINE)

        after_kill = run_check(config, "--deep")
        assert after_kill.code == 1, after_kill.output
        assert f"{repo}:v1 ({image.digest}): blob {big.digest} absent" in after_kill.stdout
        proxy.release()
        again = run_check(config, "--deep", "--repair")
    assert again.code == 0, again.output
    assert temporaries(root) == []  # the killed writer's temporary was cleaned up
    assert check_store(root)[repo] >= {image.digest, big.digest, small}
    skopeo_copy(root, repo, "v1", tmp_path / "copy")


def test_a_repair_beside_a_sync_of_the_same_repository_in_another_process(
    registry: RegistryServer, private_redis: RedisServer, tmp_path: Path
) -> None:
    repo = "crash/beside"
    shared = make_layer((tmp_path.name, "shared"))
    old = make_image((tmp_path.name, "old"), base=[shared], layers=1)
    push_image(registry.url, repo, "old", old)
    config = _config(tmp_path, registry.url, redis=private_redis.url)
    assert run_sync(config).code == 0
    root = tmp_path / "store"
    corrupt(blob_path(root, repo, shared.digest))
    big = make_layer((tmp_path.name, "big"), size=8 * MIB)
    new = make_image((tmp_path.name, "new"), base=[shared, big], layers=1)
    push_image(registry.url, repo, "new", new)

    with StallingProxy(registry.url, big.digest, after=4 * MIB) as proxy:
        _point_at(config, proxy.url)
        # The sync holds the repository (its lock in Redis) while the new tag's big layer
        # trickles in; the repair waits for it, then makes the old tree whole.
        sync = _spawn(config, "sync", log=tmp_path / "sync.log")
        wait_for("the sync to be mid-blob", lambda: any(
            p.stat().st_size >= MIB for p in temporaries(root)
        ))  # fmt: skip
        repair = _spawn(config, "check", "--deep", "--repair", "--local", log=tmp_path / "r.log")
        proxy.release()
        assert sync.wait(timeout=DEADLINE) == 0, (tmp_path / "sync.log").read_text()
        assert repair.wait(timeout=DEADLINE) == 0, (tmp_path / "r.log").read_text()

    assert run_check(config, "--deep", "--local").code == 0
    check_store(root)
    for tag in ("old", "new"):
        skopeo_copy(root, repo, tag, tmp_path / f"copy-{tag}")
