"""What ``syncworker sync`` holds in memory does not grow with the catalog: a repository that
synced is counted and forgotten; only failures and what the output names are kept.

Measured with tracemalloc (bytes Python allocated and still holds, by syncworker's code)
over two catalog sizes of the synthetic registry, in the run's own process: not RSS, which
the allocator and the load of the box make noisy.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest
import yaml

from syncworker.config import load_config
from syncworker.config.mirrorbuild import build_mirror
from syncworker.config.storeopen import store_for
from syncworker.engine import LocalLocks, RunSummary, run_registries
from syncworker.store.fsfiles import MAX_PENDING, Durability
from syncworker.store.memo import KeyedLocks, Recent
from tests.support.synthetic_registry import SyntheticRegistry

# Both sizes over the store's bounded memos (store/memo.py, REPOS_KEPT = 256), so those are
# full in both and what is left to differ is what the run keeps per repository.
SMALL, LARGE = 300, 900
# Bytes held per repository beyond SMALL: a RepoResult and the future that carried it were
# over 350. What is left is bounded, but not constant: the memos' dicts keep slots of deleted
# entries until they resize, and the standard library's parsing caches fill (10-25 B).
MAX_BYTES_PER_REPO = 60


def _config(path: Path, url: str, root: Path, content: list[dict[str, object]]) -> Path:
    registry = {"name": "up", "urls": [url], "content": content}
    config = {
        "storage": {"rootDirectory": str(root)},
        "extensions": {"sync": {"enable": True, "registries": [registry]}},
        "syncworker": {"concurrency": 8},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _held_by_a_noop_run(tmp_path: Path, repos: int) -> tuple[int, RunSummary]:
    """Bytes syncworker's code allocated during a no-op run of ``repos`` repositories and
    still holds when it returns (the summary and the mirror's caches alive)."""
    with SyntheticRegistry(repos, layer_size=256) as upstream:
        path = _config(tmp_path / f"{repos}.yaml", upstream.url, tmp_path / f"{repos}", [])
        config = load_config(str(path))
        for traced in (False, True):  # a cold run fills the store; the no-op is measured
            mirror = build_mirror(config, store_for(config), LocalLocks())
            with mirror:
                gc.collect()
                if traced:
                    tracemalloc.start()
                    before = tracemalloc.take_snapshot()
                summary = run_registries(mirror, ["up"], 8)
                if traced:
                    gc.collect()
                    after = tracemalloc.take_snapshot()
                    tracemalloc.stop()
            assert (summary.repos, summary.failures) == (repos, [])
        ours = [tracemalloc.Filter(True, "*/syncworker/*")]
        grown = after.filter_traces(ours).compare_to(before.filter_traces(ours), "filename")
        return sum(stat.size_diff for stat in grown), summary


@pytest.mark.slow
def test_a_run_holds_no_memory_per_repository_that_synced(tmp_path: Path) -> None:
    small, _ = _held_by_a_noop_run(tmp_path, SMALL)
    large, summary = _held_by_a_noop_run(tmp_path, LARGE)
    per_repo = (large - small) / (LARGE - SMALL)
    assert per_repo < MAX_BYTES_PER_REPO, (small, large, per_repo)
    assert (summary.skipped, summary.copied, summary.noted) == (LARGE, 0, [])


def test_recent_keeps_the_most_recently_used_and_keyed_locks_only_those_held() -> None:
    recent: Recent[str, int] = Recent(3)
    for n, key in enumerate("abc"):
        recent.put(key, n)
    assert recent.get("a") == 0  # now the most recent
    recent.put("d", 3)
    assert ("b" in recent, "a" in recent, len(recent)) == (False, True, 3)
    locks = KeyedLocks()
    with locks.hold("x"), locks.hold("y"):
        assert len(locks) == 2
    assert len(locks) == 0


def test_writes_no_commit_follows_are_made_durable_before_they_pile_up(tmp_path: Path) -> None:
    durable = Durability()
    for n in range(MAX_PENDING):  # a file in a directory of its own: two paths each
        directory = tmp_path / f"r{n}"
        directory.mkdir()
        (directory / ".claim").write_bytes(b"x")
        durable.written(str(directory / ".claim"))
        assert durable.pending <= MAX_PENDING + 2
    assert durable.pending < MAX_PENDING
