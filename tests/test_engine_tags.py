"""Tags of a repository run ``tag_concurrency`` lanes at a time: one in the repository's
own thread, the others on the mirror's tag pool, shared by every repository of the process.
The engine alone against a real registry (the harness of test_engine_repo.py)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial

from syncworker.engine import LocalLocks, Mirror
from syncworker.engine.events import NullEvents
from syncworker.store.fs import FsStore
from tests.support.images import make_image
from tests.support.mirror import check_store
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.support.stalling_proxy import StallingProxy
from tests.test_engine_repo import NAME, _tags, _upstream, store

__all__ = ["store"]  # a fixture, imported for pytest


class _TagThreads(NullEvents):
    """Which thread finished each image, by repository: the thread that ran its tag."""

    def __init__(self) -> None:
        self.by_repo: dict[str, set[threading.Thread]] = {}
        self._lock = threading.Lock()

    def image_done(self, registry: str, repo: str, outcome: str, size: int) -> None:
        with self._lock:
            self.by_repo.setdefault(repo, set()).add(threading.current_thread())


def test_tags_of_every_repository_share_the_process_tag_pool(
    registry: RegistryServer, store: FsStore
) -> None:
    """Several tags of a repository run ``tag_concurrency`` lanes at a time: one in the
    repository's own thread, the others on the mirror's tag pool, whose threads serve every
    later repository. Six repositories of three tags, three at once, cold and then no-op:
    the pool's threads stay the 3 it holds, a repository's tags run on at most 2 threads,
    and each lands whole."""
    repos = [f"engine/lanes-{n}" for n in range(6)]
    for repo in repos:
        for tag in ("a", "b", "c"):
            push_image(registry.url, repo, tag, make_image(f"{repo}:{tag}"))
    seen = _TagThreads()
    mirror = Mirror(
        {NAME: _upstream(registry)}, store, LocalLocks(),
        blob_threads=4, tag_threads=3, tag_concurrency=2, events=seen,
    )  # fmt: skip
    pooled: set[threading.Thread] = set()
    with mirror, ThreadPoolExecutor(3, thread_name_prefix="job") as repos_at_once:
        for _ in ("cold", "no-op"):
            results = list(repos_at_once.map(partial(mirror.sync_repo, NAME), repos))
            assert all(not r.failures and len(r.copied) + len(r.skipped) == 3 for r in results)
            assert all(len(threads) <= 2 for threads in seen.by_repo.values()), seen.by_repo
            threads = set().union(*seen.by_repo.values())
            assert all(t.name.startswith(("tag", "job")) for t in threads), threads
            pooled.update(t for t in threads if t.name.startswith("tag"))
            seen.by_repo.clear()
    assert 0 < len(pooled) <= 3, pooled
    for repo in repos:
        assert set(_tags(store, repo)) == {"a", "b", "c"}
    assert set(check_store(store.root)) >= set(repos)


def test_a_repository_moves_on_while_another_holds_every_thread_of_the_tag_pool(
    registry: RegistryServer, store: FsStore
) -> None:
    """A tag pool of one thread, which a repository's stalled blob holds (both of its tags
    name the image, so whichever lane runs on the pool waits for that blob): a second
    repository of three tags still syncs, on its own thread, before the first goes on."""
    stuck, free = "engine/pool-stuck", "engine/pool-free"
    held = make_image("pool-stuck")
    for tag in ("a", "b"):
        push_image(registry.url, stuck, tag, held)
    for tag in ("a", "b", "c"):
        push_image(registry.url, free, tag, make_image(f"{free}:{tag}"))
    blob = held.json["layers"][0]["digest"]
    with StallingProxy(registry.url, blob, after=1) as proxy:
        upstream = replace(_upstream(registry), urls=(proxy.url,))
        mirror = Mirror(
            {NAME: upstream}, store, LocalLocks(), blob_threads=4, tag_threads=1,
            tag_concurrency=2,
        )  # fmt: skip
        with mirror, ThreadPoolExecutor(1) as other:
            first = other.submit(mirror.sync_repo, NAME, stuck)
            assert proxy.reached.wait(30)
            second = mirror.sync_repo(NAME, free)
            assert not first.done()
            proxy.release()
            assert not first.result(timeout=60).failures
    assert not second.failures and sorted(second.copied) == ["a", "b", "c"]
    assert set(_tags(store, stuck)) == {"a", "b"}
