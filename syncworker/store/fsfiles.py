"""Files under the filesystem store's root: temporaries with a liveness lock, and durability.

Temporaries live in ``<root>/.tmp/``: a name starting with a dot can never be a repository,
and one directory makes crash clean-up a single scan. Each is flocked by its writer until
removed, so a clean-up tells a live writer's temporary (on this or another machine sharing
the filesystem) from a dead one's: the kernel drops the lock when its holder dies.

Durability is batched: what is written is noted as pending, and the next commit (an
``index.json`` replacement) makes all of it durable with one ``syncfs(2)`` where Linux has
it, else with one ``fsync`` per pending file and per directory, before it replaces the index.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import itertools
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from syncworker.errors import StoreError

__all__ = [
    "LEFTOVER_GRACE_SECONDS",
    "MAX_PENDING",
    "TMP_DIR",
    "Durability",
    "Temporaries",
    "check_root",
    "fsync_path",
]

# A temporary untouched this long belongs to a dead writer even if its lock cannot tell
# (another tool's file, an NFS without flock): a live writer rewrites its mtime with every
# chunk it writes.
LEFTOVER_GRACE_SECONDS = 3600.0
TMP_DIR = ".tmp"
# Paths waiting for a commit before one is made at once: writes no index follows (a claim
# recorded for a repository with nothing to copy) would otherwise pile up, in memory, for
# the whole run.
MAX_PENDING = 4096
# Beside .tmp, not in it: see Temporaries.create.
TMP_GUARD = ".tmp.lock"
# <label>-<pid>-<32 hex>: the label is blob-<first 12 hex of the digest>, index, put or link.
_TEMPORARY = re.compile(r"(blob-[0-9a-f]{12}|index|put|link)-[0-9]+-[0-9a-f]{32}")


def check_root(root: str) -> None:
    """Fail now for a root that can never be a directory (it, or the nearest of its parents
    that exists, is something else), without writing anything: the store creates its root
    and directories only when it first writes, so a dry run leaves none behind."""
    path = root
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise StoreError(f"store root {root}: {os.strerror(errno.ENOTDIR)}")


class Temporaries:
    """Fresh, flocked files in ``<root>/.tmp``, and the clean-up of dead writers' ones."""

    def __init__(self, root: str) -> None:
        self._dir = os.path.join(root, TMP_DIR)
        self._guard_path = os.path.join(root, TMP_GUARD)
        # Unique names without a random read per file: a random prefix per process and a
        # counter (the pid in the name keeps forked children apart).
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()
        # Made on the first write, so a store only read (a dry run) stays as it was: not
        # even its root is created.
        self._made = False

    def _make_dir(self) -> None:
        if not self._made:
            try:
                os.makedirs(self._dir, exist_ok=True)
            except OSError as exc:
                root = os.path.dirname(self._dir)
                raise StoreError(f"store root {root}: {exc.strerror or exc}") from None
            self._made = True

    @contextmanager
    def create(self, label: str) -> Iterator[tuple[int, str]]:
        """An empty file open for writing, as (descriptor, path); removed on the way out.

        It is created and locked under the shared guard, so a cleaner holding the guard
        exclusively never sees it unlocked.
        """
        path = f"{self._dir}/{label}-{os.getpid()}-{self._prefix}{next(self._counter):016x}"
        try:
            self._make_dir()
            with self._guard(fcntl.LOCK_SH):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError:
                    os.close(fd)
                    raise
        except OSError as exc:
            raise StoreError(f"cannot create {path}: {exc.strerror or exc}") from None
        try:
            yield fd, path  # what the caller raises passes through untouched
        finally:
            # On failure clean_leftovers gets it later; the original error matters more.
            with suppress(OSError):
                os.unlink(path)
            os.close(fd)

    def clean(self, max_age: float) -> int:
        """Remove temporaries untouched for ``max_age`` seconds, and those of dead writers."""
        if not os.path.isdir(self._dir):  # nothing written yet: nothing to clean
            return 0
        try:
            with self._guard(fcntl.LOCK_EX):
                return self._clean(time.time() - max_age)
        except OSError as exc:
            raise StoreError(f"cannot lock {self._guard_path}: {exc.strerror}") from None

    def _clean(self, deadline: float) -> int:
        removed = 0
        try:
            entries = list(os.scandir(self._dir))
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StoreError(f"cannot list {self._dir}: {exc.strerror or exc}") from None
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_mtime <= deadline or _abandoned(entry):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # its writer finished, or another cleaner got there first
            except OSError as exc:
                raise StoreError(f"cannot remove {entry.path}: {exc.strerror or exc}") from None
        return removed

    @contextmanager
    def _guard(self, mode: int) -> Iterator[None]:
        """``<root>/.tmp.lock``: writers hold it shared while they create and lock a
        temporary, the cleaner exclusively while it judges them. Its own descriptor each
        time: flock locks belong to an open file, which threads would share."""
        fd = os.open(self._guard_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)


class Durability:
    """What was written since the last commit, and the commit that makes it durable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: set[str] = set()
        self._dirs: set[str] = set()
        self._syncfs = _syncfs()

    def written(self, path: str) -> None:
        """``path`` (a new file, or a new name of one) must be durable by the next commit;
        past MAX_PENDING paths waiting, that commit is now."""
        with self._lock:
            self._files.add(path)
            self._dirs.add(os.path.dirname(path))
            full = len(self._files) + len(self._dirs) > MAX_PENDING
        if full:
            with suppress(FileNotFoundError):  # removed since: the next commit takes the rest
                fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    self.commit(fd)
                finally:
                    os.close(fd)

    @property
    def pending(self) -> int:
        """Paths waiting for the next commit."""
        with self._lock:
            return len(self._files) + len(self._dirs)

    def created_dir(self, path: str) -> None:
        with self._lock:
            self._dirs.add(os.path.dirname(path))

    def commit(self, fd: int) -> None:
        """Make everything pending, and the open file ``fd``, durable.

        Held under one lock: a thread finding nothing pending knows that the commit which
        took its writes has completed, so its index may follow them.
        """
        with self._lock:
            files, dirs = self._files, self._dirs
            try:
                if (files or dirs) and self._syncfs is not None:
                    self._syncfs(fd)
                    files, dirs = set(), set()
                    return
                for path in sorted(files | dirs):
                    with suppress(FileNotFoundError):  # a later writer replaced it
                        fsync_path(path)
                files, dirs = set(), set()
            finally:
                # Whatever a failed commit did not make durable, the next one must.
                self._files, self._dirs = files, dirs
        os.fsync(fd)


def fsync_path(path: str) -> None:
    """fsync a file or a directory by name (a directory: so that its new entries survive
    a power loss, rename(2) being durable only then)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs() -> Callable[[int], None] | None:
    """Linux's syncfs(2): one call flushes every file of the filesystem holding ``fd``."""
    try:
        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int]
    call.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        if call(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))

    return syncfs


def _abandoned(entry: os.DirEntry[str]) -> bool:
    """A temporary whose writer is gone: nobody holds its flock. Only names Temporaries
    makes are judged this way; other files wait for the age limit."""
    if not _TEMPORARY.fullmatch(entry.name):
        return False
    try:
        fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live writer
    finally:
        os.close(fd)  # also drops our lock, if we took it
    return True
