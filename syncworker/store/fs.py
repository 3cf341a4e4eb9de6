"""The filesystem store: a plain OCI image layout per repository under one root directory.

Nothing but the layout (image-spec image-layout.md) lives in a repository directory, apart
from the ``.lock`` file that serialises ``index.json`` updates, so skopeo, umoci and zot read
it as is. Temporaries live in ``<root>/.tmp/``: a name starting with a dot can never be a
repository (distribution-spec's name grammar), and one directory makes crash clean-up a
single scan. Every final name appears by ``link``/``rename`` of a complete, fsynced,
verified temporary, so a crash leaves only files in ``.tmp``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from syncworker.errors import StoreError
from syncworker.oci import Digest, VerifyingReader
from syncworker.store import layout
from syncworker.store.base import IndexEntry

__all__ = ["LEFTOVER_GRACE_SECONDS", "FsStore"]

# A temporary untouched this long belongs to a dead writer: a live put_blob rewrites its
# file's mtime with every buffer it flushes, and other processes (or machines, on a shared
# filesystem) may be writing into the same .tmp directory right now.
LEFTOVER_GRACE_SECONDS = 3600.0
# Large writes: far fewer syscalls than the registry's chunk size, small enough to not matter.
WRITE_BUFFER = 1024 * 1024
TMP_DIR = ".tmp"
# digest -> first repository holding it, one tiny file per blob: find_blob in O(1) that sees
# other processes' writes at once (see find_blob). Hidden, so not a repository.
MARKER_DIR = ".digests"
LOCK_FILE = ".lock"
# Temporaries made by _temporary: <label>-<pid>-<uuid4 hex>, the label being
# blob-<first 12 hex of the digest>, index, layout, marker or link.
_TEMPORARY = re.compile(r"(blob-[0-9a-f]{12}|index|layout|marker|link)-[0-9]+-[0-9a-f]{32}")
# Beside .tmp, not in it: see FsStore._tmp_guard.
TMP_GUARD = ".tmp.lock"


class FsStore:
    """An OCI-layout store under ``root`` (created if missing)."""

    def __init__(self, root: Path | str) -> None:
        try:
            self._root = Path(root).resolve()
            self._tmp = self._root / TMP_DIR
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"store root {root}: {exc.strerror or exc}") from None
        self._guard = threading.Lock()
        self._repo_locks: dict[str, threading.Lock] = {}
        self._repo_dirs: dict[str, Path] = {}
        self._with_layout: set[str] = set()
        self._found: dict[Digest, str] = {}
        self._unmarked_lock = threading.Lock()
        self._unmarked_blobs: dict[str, str] | None = None

    @property
    def root(self) -> Path:
        return self._root

    def __repr__(self) -> str:
        return f"FsStore({str(self._root)!r})"

    # -- blobs --------------------------------------------------------------------------

    def has_blob(self, repo: str, digest: Digest) -> bool:
        return self._blob_path(repo, digest).is_file()

    def find_blob(self, digest: Digest) -> str | None:
        for hint in (self._found.get(digest), self._read_marker(digest)):
            if hint is not None and self._holds(hint, digest):
                self._found[digest] = hint
                return hint
        # Content without a marker (written by another tool, or a marker lost in a crash):
        # listed once per store object, since a stat per repository on every miss cost 43%
        # of a cold run's time (bench/findings.md). Our own writers always leave a marker.
        repo = self._unmarked().get(f"{digest.algorithm}:{digest.hex}")
        if repo is not None and self._holds(repo, digest):
            self._remember(digest, repo, replace=True)
            return repo
        return None

    def _unmarked(self) -> dict[str, str]:
        """Every blob present when first asked, as ``alg:hex`` -> a repository holding it."""
        with self._unmarked_lock:
            if self._unmarked_blobs is None:
                found: dict[str, str] = {}
                for repo in self._scan():
                    blobs = self._root / repo / "blobs"
                    for entry in _listdir(blobs):
                        for name in _listdir(blobs / entry):
                            found.setdefault(f"{entry}:{name}", repo)
                self._unmarked_blobs = found
            return self._unmarked_blobs

    def link_blob(self, src_repo: str, repo: str, digest: Digest) -> None:
        src = self._blob_path(src_repo, digest)
        dst = self._blob_path(repo, digest)
        if dst.is_file():
            return
        self._ensure_layout(repo)
        with self._errors(repo, dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except FileExistsError:
                return
            except FileNotFoundError:
                raise StoreError(f"{src_repo}: blob {digest} is absent ({src})") from None
            except OSError:
                # Another filesystem, or one without hard links: copy through a temporary.
                with self._temporary("link") as tmp:
                    shutil.copyfile(src, tmp)
                    _fsync_file(tmp)
                    self._publish(tmp, dst)
                return
            _fsync_dir(dst.parent)
        self._remember(digest, repo)

    def put_blob(self, repo: str, digest: Digest, size: int | None, chunks: Iterable[bytes]) -> int:
        final = self._blob_path(repo, digest)
        self._ensure_layout(repo)
        reader = VerifyingReader(chunks, digest, size)
        with self._temporary(f"blob-{digest.hex[:12]}") as tmp:
            with self._errors(repo, tmp):
                out = open(tmp, "wb", buffering=WRITE_BUFFER)  # noqa: SIM115 (closed below)
            with out:
                # The reader raises before handing out the last chunk on any mismatch.
                # Its errors (upstream, content) pass through; only writes become StoreError.
                for chunk in reader:
                    with self._errors(repo, tmp):
                        out.write(chunk)
                with self._errors(repo, tmp):
                    _flush_and_sync(out)
                with self._errors(repo, final):
                    self._publish(tmp, final)
        self._remember(digest, repo)
        return reader.bytes_read

    def put_manifest(self, repo: str, digest: Digest, raw: bytes) -> None:
        self.put_blob(repo, digest, len(raw), [raw])

    def read_blob(self, repo: str, digest: Digest) -> bytes:
        path = self._blob_path(repo, digest)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{repo}: blob {digest} is absent ({path})") from None
        except OSError as exc:
            raise StoreError(f"{repo}: cannot read {path}: {exc.strerror or exc}") from None

    # -- index.json -----------------------------------------------------------------------

    def index(self, repo: str) -> list[IndexEntry]:
        return layout.entries_of(self._read_index(repo), repo)

    def update_index(self, repo: str, entries: Sequence[IndexEntry]) -> bool:
        self._ensure_layout(repo)
        path = self._repo_dir(repo) / layout.INDEX_FILE
        with self._repo_lock(repo):
            merged = layout.merge_index(self._read_index(repo), entries)
            if merged is None:
                return False
            with self._temporary("index") as tmp, self._errors(repo, path):
                tmp.write_bytes(layout.dump_index(merged))
                _fsync_file(tmp)
                os.replace(tmp, path)
                _fsync_dir(path.parent)
        return True

    def _read_index(self, repo: str) -> dict[str, Any]:
        path = self._repo_dir(repo) / layout.INDEX_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return layout.new_index()
        except OSError as exc:
            raise StoreError(f"{repo}: cannot read {path}: {exc.strerror or exc}") from None
        return layout.load_index(raw, repo)

    @contextmanager
    def _repo_lock(self, repo: str) -> Iterator[None]:
        """This process's threads, then other processes on this filesystem (flock)."""
        with self._guard:
            lock = self._repo_locks.setdefault(repo, threading.Lock())
        path = self._repo_dir(repo) / LOCK_FILE
        with lock, self._errors(repo, path), open(path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- the whole store --------------------------------------------------------------------

    def repositories(self) -> list[str]:
        return [r for r in self._scan() if (self._root / r / layout.INDEX_FILE).is_file()]

    def clean_leftovers(self, max_age: float = LEFTOVER_GRACE_SECONDS) -> int:
        """Remove temporaries untouched for ``max_age`` seconds (0: all of them), and at
        once those of writers that died (issue 2: a crash's leftovers are cleaned up by
        the next run)."""
        try:
            with self._tmp_guard(fcntl.LOCK_EX):
                return self._clean(time.time() - max_age)
        except OSError as exc:
            raise StoreError(f"cannot lock {self._root / TMP_GUARD}: {exc.strerror}") from None

    def _clean(self, deadline: float) -> int:
        removed = 0
        try:
            entries = list(os.scandir(self._tmp))
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StoreError(f"cannot list {self._tmp}: {exc.strerror or exc}") from None
        for entry in entries:
            try:
                stat = entry.stat(follow_symlinks=False)
                if stat.st_mtime <= deadline or _abandoned(entry):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # its writer finished, or another cleaner got there first
            except OSError as exc:
                raise StoreError(f"cannot remove {entry.path}: {exc.strerror or exc}") from None
        return removed

    def _holds(self, repo: str, digest: Digest) -> bool:
        try:
            return self.has_blob(repo, digest)
        except StoreError:
            return False  # a corrupt marker naming no valid repository

    def _marker_path(self, digest: Digest) -> Path:
        return self._root / MARKER_DIR / digest.algorithm / digest.hex[:2] / digest.hex

    def _read_marker(self, digest: Digest) -> str | None:
        try:
            return self._marker_path(digest).read_text(encoding="utf-8") or None
        except (OSError, UnicodeDecodeError):
            return None

    def _remember(self, digest: Digest, repo: str, *, replace: bool = False) -> None:
        """Note where ``digest`` lives, for find_blob in this and every other process.

        Markers are hints, checked against the blob itself before use, so losing or failing
        to write one costs at most a download: errors here are not worth failing a copy.
        """
        self._found[digest] = repo
        path = self._marker_path(digest)
        with suppress(OSError, StoreError):
            path.parent.mkdir(parents=True, exist_ok=True)
            if replace:
                with self._temporary("marker") as tmp:
                    tmp.write_text(repo, encoding="utf-8")
                    os.replace(tmp, path)
            else:
                # O_EXCL: the first repository to hold a digest stays its marker.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(repo)

    def _scan(self) -> list[str]:
        """Every directory holding an ``oci-layout`` or ``index.json``, as a repo name."""
        found = []
        for top, dirs, files in os.walk(self._root, onerror=None):
            rel = os.path.relpath(top, self._root)
            is_repo = layout.INDEX_FILE in files or layout.LAYOUT_FILE in files
            if is_repo and rel != ".":
                found.append(rel.replace(os.sep, "/"))
            # Never descend into hidden dirs (.tmp) nor into a repository's blobs.
            dirs[:] = [d for d in dirs if not d.startswith(".") and not (is_repo and d == "blobs")]
        return sorted(found)

    # -- paths and files -----------------------------------------------------------------------

    def _repo_dir(self, repo: str) -> Path:
        known = self._repo_dirs.get(repo)
        if known is not None:
            return known
        path = (self._root / layout.check_repo_name(repo)).resolve()
        # A symlink inside the root could still point out of it.
        if path == self._root or not path.is_relative_to(self._root):
            raise StoreError(f"repository {repo[:300]!r} resolves outside the store root")
        self._repo_dirs[repo] = path
        return path

    def _blob_path(self, repo: str, digest: Digest) -> Path:
        return self._repo_dir(repo) / "blobs" / digest.algorithm / digest.hex

    def _ensure_layout(self, repo: str) -> None:
        """Create ``<repo>/oci-layout`` once; every layout tool checks it first."""
        if repo in self._with_layout:
            return
        path = self._repo_dir(repo) / layout.LAYOUT_FILE
        if not path.is_file():
            with self._temporary("layout") as tmp, self._errors(repo, path):
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(layout.LAYOUT_BYTES)
                _fsync_file(tmp)
                os.replace(tmp, path)
                _fsync_dir(path.parent)
        self._with_layout.add(repo)

    @contextmanager
    def _temporary(self, label: str) -> Iterator[Path]:
        """A fresh empty file in ``.tmp``, flocked by us until it is removed on the way out.

        The lock is how clean_leftovers tells a live writer's temporary from a dead one's
        (the kernel drops it when we die). The file is created and locked under the
        shared guard, so the cleaner, holding it exclusively, never sees it unlocked.
        """
        path = self._tmp / f"{label}-{os.getpid()}-{uuid.uuid4().hex}"
        try:
            with self._tmp_guard(fcntl.LOCK_SH):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError:
                    os.close(fd)
                    raise
        except OSError as exc:
            raise StoreError(f"cannot create {path}: {exc.strerror or exc}") from None
        try:
            yield path  # what the caller raises passes through untouched
        finally:
            # On failure clean_leftovers gets it later; the original error matters more.
            with suppress(OSError):
                path.unlink(missing_ok=True)
            os.close(fd)

    @contextmanager
    def _tmp_guard(self, mode: int) -> Iterator[None]:
        """``<root>/.tmp.lock``: writers hold it shared while they create and lock a
        temporary, clean_leftovers exclusively while it judges them. Its own descriptor
        each time: flock locks belong to an open file, which threads would share."""
        fd = os.open(self._root / TMP_GUARD, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)

    def _publish(self, tmp: Path, final: Path) -> None:
        """Make a complete, verified temporary visible under its final name."""
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            # link, not rename: an existing final blob (same digest, same bytes) is kept,
            # so hard links other repositories share with it stay intact.
            os.link(tmp, final)
        except FileExistsError:
            return
        except OSError:
            os.replace(tmp, final)  # a filesystem without hard links
        _fsync_dir(final.parent)

    @contextmanager
    def _errors(self, repo: str, path: Path) -> Iterator[None]:
        """Translate OS errors into a StoreError naming the repository and the path."""
        try:
            yield
        except OSError as exc:
            raise StoreError(f"{repo}: {path}: {exc.strerror or exc}") from exc


def _abandoned(entry: os.DirEntry[str]) -> bool:
    """A temporary whose writer is gone: nobody holds its flock (see _temporary). Only
    names _temporary makes are judged this way; another tool's or an older version's
    files wait for the age limit."""
    if not _TEMPORARY.fullmatch(entry.name):
        return False
    try:
        fd = os.open(entry.path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live writer
    finally:
        os.close(fd)  # also drops our lock, if we took it
    return True


def _flush_and_sync(out: IO[bytes]) -> None:
    out.flush()
    os.fsync(out.fileno())


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Without this a power loss may forget the new directory entry (rename(2) durability).
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
