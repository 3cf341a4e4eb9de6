"""One upstream trickling a layer never holds up another registry's copy of it.

Two real registries hold the same image. One sits behind a proxy that trickles the layer's
body (a kilobyte every fifth of a second: never idle long enough for a read timeout, done in
minutes); the copy from it holds the layer's single-flight. The copy from the other registry
must finish while that trickle is still going, in one ``syncworker sync`` process (in-process
locks), across two processes sharing Redis, and on a Celery worker."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from syncworker.config import load_config
from syncworker.config.mirrorbuild import build_mirror
from syncworker.config.storeopen import store_for
from syncworker.engine import LocalLocks
from tests.support.cluster import Cluster, trigger, wait_finished
from tests.support.images import Manifest, make_image
from tests.support.mirror import check_store, run_sync, write_sync_config
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.support.stalling_proxy import StallingProxy

KIB = 1024
LAYER_SIZE = 256 * KIB
SLOW, STEADY = "trickling", "steady"


def _image(make_registry: object, seed: str) -> tuple[Manifest, RegistryServer, RegistryServer]:
    image = make_image(seed, layers=1, layer_size=LAYER_SIZE)
    first, second = make_registry(), make_registry()  # type: ignore[operator]
    push_image(first.url, "team/base", "v1", image)
    push_image(second.url, "other/base", "v1", image)
    return image, first, second


def _trickling(registry: RegistryServer, image: Manifest, trickle: int = KIB) -> StallingProxy:
    layer = image.blobs[-1]
    return StallingProxy(registry.url, layer.digest, after=16 * KIB, trickle=trickle, every=0.2)


def _config(directory: Path, root: Path, name: str, url: str, **settings: str) -> Path:
    directory.mkdir()
    registry = {"name": name, "urls": [url], "content": [{"prefix": "**"}]}
    return write_sync_config(directory, root, [registry], settings=settings or None)


def test_one_process_copies_from_the_steady_upstream_during_the_trickle(
    make_registry: object, tmp_path: Path
) -> None:
    image, first, second = _image(make_registry, "stall-one-process")
    root = tmp_path / "store"
    with _trickling(first, image) as proxy:
        config_path = _config(tmp_path / "cfg", root, SLOW, proxy.url)
        config = load_config(config_path)
        steady = _config(tmp_path / "steady", root, STEADY, second.url)
        config.registries.extend(load_config(steady).registries)
        with (
            build_mirror(config, store_for(config), LocalLocks()) as mirror,
            ThreadPoolExecutor(1) as pool,
        ):
            slow = pool.submit(mirror.sync_repo, SLOW, "team/base")
            assert proxy.reached.wait(60), "the trickling copy never began the layer"
            fast = mirror.sync_repo(STEADY, "other/base")
            trickled = proxy.sent
            assert (fast.failures, fast.copied) == ([], ["v1"])
            assert not slow.done() and trickled < LAYER_SIZE / 2  # it finished during the trickle
            proxy.release()
            done = slow.result(timeout=120)
            assert (done.failures, done.copied) == ([], ["v1"])
    assert set(check_store(root)) == {"team/base", "other/base"}


def test_two_processes_sharing_redis_copy_from_the_steady_upstream_during_the_trickle(
    make_registry: object, private_redis: RedisServer, tmp_path: Path
) -> None:
    image, first, second = _image(make_registry, "stall-two-processes")
    root = tmp_path / "store"
    with _trickling(first, image) as proxy:
        slow_config = _config(tmp_path / "slow", root, SLOW, proxy.url, redis=private_redis.url)
        log = tmp_path / "slow.log"
        with log.open("wb") as out:
            slow = subprocess.Popen(
                [sys.executable, "-m", "syncworker", "sync", "-c", str(slow_config)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            assert proxy.reached.wait(60), log.read_text()
            fast_config = _config(
                tmp_path / "fast", root, STEADY, second.url, redis=private_redis.url
            )
            fast = run_sync(fast_config)
            trickled, still_running = proxy.sent, slow.poll() is None
            assert fast.code == 0, fast.output
            assert still_running and trickled < LAYER_SIZE / 2  # it finished during the trickle
            proxy.release()
            assert slow.wait(120) == 0, log.read_text()
        finally:
            slow.kill()
            slow.wait()
    assert set(check_store(root)) == {"team/base", "other/base"}


def test_a_worker_copies_from_the_steady_upstream_during_the_trickle(
    make_registry: object, private_redis: RedisServer, tmp_path: Path
) -> None:
    """One worker with task slots to spare: the trickling registry's copy holds one, the
    steady registry's run finishes on the others while the trickle goes on (half a
    kilobyte every fifth of a second here: a worker's tasks take a while to start)."""
    image, first, second = _image(make_registry, "stall-worker")
    with _trickling(first, image, trickle=KIB // 2) as proxy:
        cluster = Cluster(tmp_path, proxy, private_redis.url)
        try:
            config = yaml.safe_load(cluster.config_path.read_text())
            config["extensions"]["sync"]["registries"] = [
                {"name": SLOW, "urls": [proxy.url], "content": [{"prefix": "**"}]},
                {"name": STEADY, "urls": [second.url], "content": [{"prefix": "**"}]},
            ]
            cluster.config_path.write_text(yaml.safe_dump(config))
            cluster.worker("w1", "--concurrency", "4", "-P", "threads")
            coord = cluster.coord()
            slow_run, _ = trigger(cluster, "-r", SLOW)
            assert proxy.reached.wait(120), cluster.log("w1")[-3000:]
            steady_run, _ = trigger(cluster, "-r", STEADY)
            steady = wait_finished(coord, steady_run)
            trickled = proxy.sent
            slow_status = coord.run_status(slow_run)
            assert steady.state == "finished" and not steady.failures, steady
            assert slow_status is not None and slow_status.state == "running"
            assert trickled < LAYER_SIZE / 2  # it finished during the trickle
            proxy.release()
            assert wait_finished(coord, slow_run).state == "finished"
            coord.close()
        finally:
            cluster.stop_all()
    assert set(check_store(cluster.store)) == {"team/base", "other/base"}
