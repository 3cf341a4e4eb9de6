"""Lock files on a filesystem that can be removed without breaking mutual exclusion.

A repository's lock file (``.locks/<repo>/.lock``, :meth:`FsStore.hold`) is flocked by every
sync and gc of it. Kept for ever, one would stay behind for every repository deleted or never
written. Removing a lock file is only safe with a rule every holder follows, because a flock
belongs to the open file, not to its name: a process that opened the file before it was
removed, and then got the lock, would hold a lock nobody else can see, beside a process that
made a new file under the same name. So a holder that got the lock checks that the name still
names the file it locked, and takes the new one otherwise (:func:`lock_file`); the file is
removed only by its holder, before it lets go (:func:`remove_lock`). Its directories go only
while empty (rmdir), and a holder whose directory vanished between making it and opening the
file makes it again.
"""

from __future__ import annotations

import fcntl
import os
import time

from syncworker.errors import LockBusy

__all__ = ["LOCK_POLL_SECONDS", "lock_file", "remove_lock"]

# How often a holder waiting with a timeout tries a lock file another process holds again
# (flock itself waits only forever or not at all).
LOCK_POLL_SECONDS = 0.05


def lock_file(path: str, timeout: float | None, where: str) -> int:
    """An open descriptor of the lock file at ``path``, flocked, and still the file at
    ``path``; LockBusy after ``timeout`` seconds (None: as long as it takes). Raises
    OSError for what the filesystem refuses."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        fd = _open(path)
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            _flock_within(fd, left, where)
            if _same_file(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # removed by its last holder while we waited: lock the new one


def remove_lock(path: str, top: str) -> None:
    """Remove the lock file at ``path``, which the caller holds, then its directories up to
    ``top`` while they are empty (rmdir removes only an empty one, never another lock)."""
    os.unlink(path)
    directory = os.path.dirname(path)
    while directory != top and directory.startswith(top + os.sep):
        try:
            os.rmdir(directory)
        except OSError:
            return  # another repository's lock below it, or one made meanwhile
        directory = os.path.dirname(directory)


def _open(path: str) -> int:
    """The lock file at ``path``, made with its directories if missing. Not made durable:
    a lock file lost in a crash is made again by the next holder."""
    while True:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except (FileNotFoundError, FileExistsError):
            # A directory of it was removed (left empty by a holder) meanwhile: makedirs
            # says FileExistsError when one vanishes between its mkdir and its check.
            continue


def _same_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open at ``fd``."""
    held = os.fstat(fd)
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def _flock_within(fd: int, timeout: float | None, where: str) -> None:
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockBusy(where, timeout) from None
        time.sleep(LOCK_POLL_SECONDS)
