"""A filesystem store's repository lock files (``.locks/<repo>/.lock``) do not outlive what
they lock: the last holder of a repository that holds nothing removes its lock, and gc those
of repositories deleted by hand; and removing them never lets two holders in at once, across
processes, a holder killed (SIGKILL) or a sync running beside the removals."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from syncworker.errors import LockBusy
from syncworker.store.fs import FsStore
from tests.support.chaos import verified_tags
from tests.support.corpus import Corpus
from tests.support.mirror import run_sync, write_sync_config
from tests.support.registry_server import RegistryServer

Seeded = tuple[RegistryServer, Corpus]
LOCKS = ".locks"
# Rounds per process of the overlap test: each takes and drops the lock file once.
ROUNDS = 300
WAIT_SECONDS = 120.0


def _lock_dirs(root: Path) -> set[str]:
    """Repositories with a lock file left under ``root``."""
    top = root / LOCKS
    return {p.parent.relative_to(top).as_posix() for p in top.rglob(".lock")}


def test_the_last_holder_of_a_repository_holding_nothing_removes_its_lock(tmp_path: Path) -> None:
    store = FsStore(tmp_path)
    with store.hold("team/gone"):
        assert _lock_dirs(tmp_path) == {"team/gone"}
    with store.hold("team/kept"):
        store.backend.put("team/kept/index.json", b'{"schemaVersion": 2, "manifests": []}')
    with store.hold("team/gone/child"):
        pass
    assert _lock_dirs(tmp_path) == {"team/kept"}
    assert sorted(p.name for p in (tmp_path / LOCKS).iterdir()) == ["team"]  # no empty dirs
    assert list((tmp_path / LOCKS / "team").iterdir()) == [tmp_path / LOCKS / "team" / "kept"]


def test_gc_removes_the_locks_of_repositories_deleted_by_hand(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    root = tmp_path / "store"
    entry = {"urls": [server.url], "repos": ["library/alpine", "library/busybox"]}
    config = write_sync_config(tmp_path, root, [entry])
    assert run_sync(config).code == 0
    assert _lock_dirs(root) == {"library/alpine", "library/busybox"}
    shutil.rmtree(root / "library" / "busybox")
    store = FsStore(root)
    with store.hold("library/alpine"):  # held elsewhere: left alone
        assert store.drop_unused_locks() == 1
    assert _lock_dirs(root) == {"library/alpine"}
    held = subprocess.run([sys.executable, "-m", "syncworker", "gc", "-c", str(config)],
                          capture_output=True, text=True, timeout=WAIT_SECONDS)  # fmt: skip
    assert held.returncode == 0, held.stderr
    assert _lock_dirs(root) == {"library/alpine"}
    assert verified_tags(root, corpus.tags, skopeo=False) == len(corpus.tags["library/alpine"])


def _hold_rounds(root: str, marker: str, rounds: int) -> int:
    """Take the lock of a repository that holds nothing ``rounds`` times (every release
    removes the lock file); inside, a marker file only one holder at a time may create.
    How many times another holder's marker was found: two holders at once."""
    store = FsStore(root)
    overlaps = 0
    for _ in range(rounds):
        with store.hold("busy/repo"):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                overlaps += 1
                continue
            os.close(fd)
            time.sleep(0.0005)
            os.unlink(marker)
    return overlaps


def test_holders_in_several_processes_never_overlap_while_lock_files_come_and_go(
    tmp_path: Path,
) -> None:
    root, marker = str(tmp_path / "store"), str(tmp_path / "inside")
    FsStore(root)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        overlaps = pool.starmap(_hold_rounds, [(root, marker, ROUNDS)] * 4)
    assert overlaps == [0, 0, 0, 0]
    assert _lock_dirs(tmp_path / "store") == set()


def test_a_holder_killed_leaves_a_lock_the_next_holder_takes_and_removes(tmp_path: Path) -> None:
    root = tmp_path / "store"
    FsStore(root)
    code = (
        "import sys, time; from syncworker.store.fs import FsStore\n"
        "with FsStore(sys.argv[1]).hold('killed/repo'):\n"
        "    print('held', flush=True); time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE)
    store = FsStore(root)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"held\n"
        try:
            with store.hold("killed/repo", blocking_timeout=0.2):
                raise AssertionError("held by two")
        except LockBusy:
            pass
        assert store.drop_unused_locks() == 0  # held: not removed
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    assert _lock_dirs(root) == {"killed/repo"}  # the kernel let go; the file stays
    with store.hold("killed/repo", blocking_timeout=5):
        pass
    assert _lock_dirs(root) == set()


def test_removing_locks_beside_a_sync_in_another_process_leaves_every_tree_whole(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    root = tmp_path / "store"
    config = write_sync_config(tmp_path, root, [{"urls": [server.url]}])
    store = FsStore(root)
    sync = subprocess.Popen([sys.executable, "-m", "syncworker", "sync", "-q", "-c", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        drops = 0
        while sync.poll() is None:
            store.drop_unused_locks()
            drops += 1
        output = sync.communicate(timeout=WAIT_SECONDS)[0]
        assert sync.returncode == 0, output
    finally:
        if sync.poll() is None:
            sync.send_signal(signal.SIGKILL)
            sync.communicate()
    assert drops > 1
    assert verified_tags(root, corpus.tags, skopeo=False) == sum(map(len, corpus.tags.values()))
    assert _lock_dirs(root) == set(corpus.tags)  # every repository holds an index.json
    again = run_sync(config)
    assert again.code == 0 and "0 images copied" in again.stdout, again.output
