"""The filesystem store: a plain OCI image layout per repository under one root directory.

Nothing but the layout (image-spec image-layout.md) lives in a repository directory, apart
from the ``.lock`` file that serialises ``index.json`` replacements between processes and
the ``.claim`` naming the repository's source (:mod:`syncworker.store.claim`), so skopeo,
umoci and zot read it as is. ``.locks/<repo>/.lock`` is the repository's own lock,
flocked by every sync and gc of it (:meth:`FsStore.hold`), and removed by its last holder
when the repository holds no ``index.json`` (:mod:`syncworker.store.fslocks`; gc removes those
of repositories deleted by hand). Blobs are streamed into temporaries (see
:mod:`syncworker.store.fsfiles`) and appear at their final name by ``link``, complete and
verified; identical blobs of several repositories share one inode.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import TypeVar

from syncworker.errors import LockBusy, StoreError
from syncworker.store.fsfiles import (
    LEFTOVER_GRACE_SECONDS,
    Durability,
    Temporaries,
    check_root,
    fsync_path,
)
from syncworker.store.fslocks import lock_file, remove_lock
from syncworker.store.indexdoc import INDEX_FILE
from syncworker.store.layout import LayoutStore, check_repo_name
from syncworker.store.layoutbackend import Listing, Stored
from syncworker.store.memo import REPOS_KEPT, Recent

__all__ = ["LEFTOVER_GRACE_SECONDS", "FsBackend", "FsStore"]

LOCK_FILE = ".lock"
# Reads of a blob being hashed again: large enough that hashing (which releases the GIL
# for large updates) dominates the system calls.
READ_CHUNK = 1 << 20
# Repository locks held by syncs and gc (see FsStore.hold); hidden, so never a repository.
LOCKS_DIR = ".locks"
T = TypeVar("T")


class FsBackend:
    """The :class:`~syncworker.store.layoutbackend.Backend` of a local (or shared) directory."""

    def __init__(self, root: Path | str) -> None:
        try:
            self.root = os.path.realpath(root)
        except OSError as exc:
            raise StoreError(f"store root {root}: {exc.strerror or exc}") from None
        check_root(self.root)
        self._temps = Temporaries(self.root)
        self._durable = Durability()
        self._safe_dirs: Recent[str, bool] = Recent(REPOS_KEPT)  # checked, bounded

    def __repr__(self) -> str:
        return repr(self.root)

    def where(self, key: str) -> str:
        return f"{self.root}/{key}"

    def close(self) -> None:
        """Nothing to close: every file is closed by the call that opened it."""

    def head(self, key: str) -> int | None:
        try:
            found = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._error(key, exc) from None
        return found.st_size if stat.S_ISREG(found.st_mode) else None

    def get(self, key: str) -> Stored | None:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._error(key, exc) from None
        try:
            found = os.fstat(fd)
            return Stored(_read_all(fd, found.st_size), _version(found))
        except OSError as exc:
            raise self._error(key, exc) from None
        finally:
            os.close(fd)

    @contextmanager
    def open(
        self, key: str, start: int = 0, length: int | None = None
    ) -> Iterator[Iterable[bytes]]:
        try:
            fd = os.open(self._path(key), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise self._error(key, exc) from None
        try:
            yield self._chunks(key, fd, start, length)
        finally:
            os.close(fd)

    def _chunks(self, key: str, fd: int, start: int, length: int | None) -> Iterator[bytes]:
        end = None if length is None else start + length
        with self._errors(key):
            while end is None or start < end:
                chunk = os.pread(
                    fd, READ_CHUNK if end is None else min(READ_CHUNK, end - start), start
                )
                if not chunk:
                    return
                start += len(chunk)
                yield chunk

    def local_path(self, key: str) -> str | None:
        return self._path(key)

    def presign(self, key: str, expires: int) -> str | None:
        return None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with self._temps.create("put") as (fd, tmp), self._errors(key):
            _write_all(fd, data)
            self._in_directory(path, lambda: os.replace(tmp, path))
            self._durable.written(path)  # may commit: its errors are ours too

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        with self._errors(key):
            try:
                fd = self._in_directory(path, lambda: os.open(path, flags, 0o644))
            except FileExistsError:
                return False
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            self._durable.written(path)
        return True

    def put_if_match(self, key: str, data: bytes, version: str | None) -> bool:
        path = self._path(key)
        with self._errors(key), self._flock(os.path.join(os.path.dirname(path), LOCK_FILE)):
            if _version_of(path) != version:
                return False
            with self._temps.create("index") as (fd, tmp):
                _write_all(fd, data)
                self._durable.commit(fd)
                os.replace(tmp, path)
            fsync_path(os.path.dirname(path))
        return True

    def write(self, key: str, chunks: Iterable[bytes], size: int | None) -> int:
        path = self._path(key)
        written = 0
        with self._temps.create(_label(key)) as (fd, tmp):
            # Only our own writes become StoreError; the chunks' errors pass through.
            for chunk in chunks:
                with self._errors(key):
                    _write_all(fd, chunk)
                written += len(chunk)
            with self._errors(key):
                self._publish(tmp, path)
        return written

    def copy(self, src: str, dst: str) -> bool:
        source, path = self._path(src), self._path(dst)
        with self._errors(dst):
            try:
                self._in_directory(path, lambda: os.link(source, path))
            except FileExistsError:
                return True
            except FileNotFoundError:
                return False  # the directory exists by now: the source is missing
            except OSError:
                # Another filesystem, or one without hard links: copy through a temporary.
                with self._temps.create("link") as (_, tmp):
                    shutil.copyfile(source, tmp)
                    self._publish(tmp, path)
                return True
            self._durable.written(path)
        return True

    def list(self, prefix: str) -> Listing:
        files: set[str] = set()
        dirs: list[str] = []
        try:
            with os.scandir(self._path(prefix) if prefix else self.root) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        dirs.append(entry.name)
                    elif entry.is_file():
                        files.add(entry.name)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            raise self._error(prefix, exc) from None
        return Listing(frozenset(files), tuple(sorted(dirs)))

    def aged(self, prefix: str) -> dict[str, tuple[int, float]]:
        """A hard link makes an old file present somewhere new: it changes the file's
        ctime, not its mtime, so the younger of the two is the age."""
        now = time.time()
        found: dict[str, tuple[int, float]] = {}
        with self._errors(prefix):
            for name in self.list(prefix).files:
                try:
                    info = os.stat(self._path(prefix + name))
                except FileNotFoundError:
                    continue
                found[name] = (info.st_size, now - max(info.st_mtime, info.st_ctime))
        return found

    def delete(self, key: str) -> None:
        with self._errors(key), suppress(FileNotFoundError):
            os.unlink(self._path(key))

    def clean_leftovers(self, max_age: float | None) -> int:
        return self._temps.clean(LEFTOVER_GRACE_SECONDS if max_age is None else max_age)

    # -- paths ----------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        """The file of ``key``; its directory checked once to resolve inside the root (a
        symlink inside the root could point out of it)."""
        path = f"{self.root}/{key.rstrip('/')}"
        directory = os.path.dirname(path)
        if directory not in self._safe_dirs:
            resolved = os.path.realpath(directory)
            if resolved != self.root and not resolved.startswith(self.root + os.sep):
                raise StoreError(f"{key[:300]!r} resolves outside the store root")
            self._safe_dirs.put(directory, True)
        return path

    def _in_directory(self, path: str, make: Callable[[], T]) -> T:
        """``make()`` a new entry at ``path``, creating its directories when missing (a
        failure tells, so an existing directory costs no extra call)."""
        try:
            return make()
        except FileNotFoundError:
            # The directory is missing, or was just made by another thread: a second
            # attempt tells (then the missing one is a source).
            self._makedirs(os.path.dirname(path))
        return make()

    def _makedirs(self, directory: str) -> None:
        parent = os.path.dirname(directory)
        if not os.path.isdir(parent):
            self._makedirs(parent)
        try:
            os.mkdir(directory)
        except FileExistsError:
            return
        self._durable.created_dir(directory)

    def _publish(self, tmp: str, path: str) -> None:
        """Make a complete, verified temporary visible under its final name. link, not
        rename: an existing final blob (same digest, same bytes) is kept, so hard links
        other repositories share with it stay intact."""
        try:
            self._in_directory(path, lambda: os.link(tmp, path))
        except FileExistsError:
            return
        except OSError:
            self._in_directory(path, lambda: os.replace(tmp, path))  # no hard links here
        self._durable.written(path)

    @contextmanager
    def exclusive(
        self,
        key: str,
        blocking_timeout: float | None,
        unused: Callable[[], bool] | None = None,
        keep_dir: str = "",
    ) -> Iterator[None]:
        """Hold the lock file ``key`` (flock: released by the kernel when the holder
        dies); LockBusy after ``blocking_timeout`` seconds, None waits as long as it takes.

        When ``unused()`` says so at release, the lock file is removed while still held,
        with the directories that this leaves empty up to ``keep_dir``
        (:mod:`syncworker.store.fslocks` says why no other holder is harmed)."""
        path = self._path(key)
        with self._errors(key):
            fd = lock_file(path, blocking_timeout, self.where(key))
        try:
            yield
        finally:
            try:
                if unused is not None and unused():
                    remove_lock(path, os.path.join(self.root, keep_dir))
            except (OSError, StoreError):
                pass  # kept: the next holder removes it
            finally:
                os.close(fd)

    @contextmanager
    def _flock(self, path: str) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Translate OS errors into a StoreError naming the path (and so the repository)."""
        try:
            yield
        except OSError as exc:
            raise self._error(key, exc) from exc

    def _error(self, key: str, exc: OSError) -> StoreError:
        return StoreError(f"{self.where(key)}: {exc.strerror or exc}")


class FsStore(LayoutStore):
    """An OCI-layout store under ``root`` (created, with what it holds, on its first write)."""

    def __init__(self, root: Path | str) -> None:
        self._fs = FsBackend(root)
        super().__init__(self._fs)

    @property
    def root(self) -> Path:
        return Path(self._fs.root)

    def hold(
        self, repo: str, *, blocking_timeout: float | None = None
    ) -> AbstractContextManager[None]:
        """Keep every other process's sync and gc out of ``repo``, on this machine or
        another sharing the filesystem (Linux maps flock onto NFS locks)."""
        # ``.lock`` inside a directory per repository: no repository segment starts with a
        # dot, so no name (``a.lock/b`` beside ``a``) lands on another one's lock file.
        key = f"{LOCKS_DIR}/{check_repo_name(repo)}/{LOCK_FILE}"
        return self._fs.exclusive(key, blocking_timeout, partial(self._gone, repo), LOCKS_DIR)

    def drop_unused_locks(self) -> int:
        """Remove the lock files of repositories that hold no ``index.json`` (deleted by
        hand, or never written), each while holding it: one another process holds is left
        for its holder to remove. How many were removed."""
        top = os.path.join(self._fs.root, LOCKS_DIR)
        dropped = 0
        for directory, _, files in os.walk(top):
            repo = os.path.relpath(directory, top)
            if LOCK_FILE not in files or repo == "." or not self._gone(repo):
                continue
            try:
                with self.hold(repo, blocking_timeout=0):
                    pass
            except (LockBusy, StoreError):
                continue
            dropped += not os.path.exists(os.path.join(directory, LOCK_FILE))
        return dropped

    def _gone(self, repo: str) -> bool:
        """Whether ``repo`` holds no ``index.json``: its lock file need not stay."""
        return self.backend.head(f"{repo}/{INDEX_FILE}") is None


def _label(key: str) -> str:
    """What a temporary's name says it will become: ``blob-<12 hex>`` for a blob."""
    directory, _, name = key.rpartition("/")
    return f"blob-{name[:12]}" if "/blobs/" in f"/{directory}/" else "put"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int, size: int) -> bytes:
    parts = []
    while part := os.read(fd, max(size, 65536)):
        parts.append(part)
    return b"".join(parts)


def _version(found: os.stat_result) -> str:
    # Every replacement is a rename of a new file: a new inode, or at least a new mtime.
    return f"{found.st_ino}-{found.st_mtime_ns}-{found.st_size}"


def _version_of(path: str) -> str | None:
    try:
        return _version(os.stat(path))
    except FileNotFoundError:
        return None
