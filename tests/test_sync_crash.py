"""A ``syncworker sync`` killed (SIGKILL) in the middle of writing a large blob.

The upstream sits behind a tiny proxy that stops the large blob's body part-way until
released, so the process is reliably killed while the blob is half written (store writes
go to ``<root>/.tmp`` first, see syncworker/store/fsfiles.py). Then every ``index.json`` must
reference only complete, verified content; a second run must finish the job, exit 0, leave
no temporaries, and produce images that skopeo and umoci read.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin

import pytest
import requests

from syncworker.store.fs import FsStore
from tests.support.images import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Blob,
    Manifest,
    canonical_json,
    make_image,
    make_index,
)
from tests.support.mirror import (
    check_store,
    mirrored_digest,
    run_sync,
    temporaries,
    write_sync_config,
)
from tests.support.ports import wait_until
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.support.stalling_proxy import StallingProxy

BIG_SIZE = 64 * 1024 * 1024
# The proxy sends this much of the big blob, then waits: well past the store's 1 MiB write
# buffer, so the temporary on disk holds part of the blob when the process is killed.
STALL_AFTER = 8 * 1024 * 1024
CHUNK = 1024 * 1024
# On disk once the proxy holds the body: a few chunks of it are still in flight (socket,
# client read, verifying reader, write buffer), but not STALL_AFTER's worth.
MID_BLOB = 2 * CHUNK
# Generous bounds for a loaded 2-core box; reaching them is a failure, not a measurement.
WAIT_SECONDS = 120.0
UMOCI_TIMEOUT = 120.0
BIG_REPO, BIG_TAG = "crash/big", "v1"


# -- a large real layer, generated and pushed without holding it in memory -------------


class _HashingWriter:
    """Writes through to ``target`` while hashing and counting."""

    def __init__(self, target: IO[bytes] | Any) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)

    def flush(self) -> None:
        self.target.flush()


class _RandomReader:
    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = CHUNK) -> bytes:
        n = min(n, self.left, CHUNK)
        self.left -= n
        return os.urandom(n)


@dataclass(frozen=True)
class BigLayer:
    path: Path
    digest: str
    diff_id: str
    size: int


def _make_big_layer(path: Path, payload: int) -> BigLayer:
    """A gzip'd tar of one file of ``payload`` random bytes (stored deflate: fast, real)."""
    with path.open("wb") as out:
        compressed = _HashingWriter(out)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=0, mtime=0) as gz:
            plain = _HashingWriter(gz)
            stream = tarfile.open(  # noqa: SIM115 - the with below closes it
                fileobj=plain,  # type: ignore[call-overload]
                mode="w|",
                format=tarfile.PAX_FORMAT,
            )
            with stream as tar:
                info = tarfile.TarInfo("data/big.bin")
                info.size, info.mtime, info.mode = payload, 0, 0o644
                tar.addfile(info, _RandomReader(payload))
    return BigLayer(
        path,
        "sha256:" + compressed.sha.hexdigest(),
        "sha256:" + plain.sha.hexdigest(),
        compressed.size,
    )


def _upload_file(url: str, repo: str, digest: str, path: Path) -> None:
    """distribution-spec monolithic upload (POST then PUT ?digest=), streamed from a file."""
    with requests.Session() as http:
        start = http.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=60)
        assert start.status_code == 202, start.text
        location = urljoin(f"{url}/v2/{repo}/", start.headers["Location"])
        glue = "&" if "?" in location else "?"
        with path.open("rb") as body:
            done = http.put(f"{location}{glue}digest={digest}", data=body, timeout=300)
        assert done.status_code == 201, done.text


def _push_big_image(url: str, layer: BigLayer) -> Manifest:
    config = Blob(
        canonical_json(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            }
        ),
        OCI_CONFIG,
    )
    _upload_file(url, BIG_REPO, layer.digest, layer.path)
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [{"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size}],
    }
    # The big layer is already there; push_image uploads the config and the manifest.
    image = Manifest(canonical_json(body), OCI_MANIFEST, blobs=(config,))
    push_image(url, BIG_REPO, BIG_TAG, image)
    return image


# -- the test --------------------------------------------------------------------------


@pytest.fixture
def big_layer(tmp_path: Path) -> BigLayer:
    return _make_big_layer(tmp_path / "big-layer.tar.gz", BIG_SIZE)


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[str, str, int], StallingProxy]]:
    started: list[StallingProxy] = []

    def make(upstream: str, digest: str, after: int) -> StallingProxy:
        started.append(StallingProxy(upstream, digest, after))
        return started[-1]

    yield make
    for proxy in started:
        proxy.close()


def _start_sync(config: Path, log: Path) -> subprocess.Popen[bytes]:
    code = "import sys; from syncworker.cli import main; sys.exit(main())"
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, "sync", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[1],
        )


def _big_temporary_size(root: Path, layer: BigLayer) -> int:
    prefix = f"blob-{layer.digest.split(':')[1][:12]}"
    sizes = [p.stat().st_size for p in temporaries(root) if p.name.startswith(prefix)]
    return max(sizes, default=0)


def _tags(root: Path, repo: str) -> set[str]:
    index = root / repo / "index.json"
    if not index.is_file():
        return set()
    return {
        m.get("annotations", {}).get("org.opencontainers.image.ref.name")
        for m in json.loads(index.read_bytes())["manifests"]
    } - {None}


def test_killed_mid_blob_then_resumed(
    make_registry: Callable[..., RegistryServer],
    proxy_factory: Callable[[str, str, int], StallingProxy],
    big_layer: BigLayer,
    tmp_path: Path,
) -> None:
    server = make_registry()
    big = _push_big_image(server.url, big_layer)
    small = {
        ("crash/small-a", "v1"): make_image("crash-small-a"),
        ("crash/small-b", "v1"): make_index("crash-small-b"),
    }
    for (repo, tag), image in small.items():
        push_image(server.url, repo, tag, image)
    proxy = proxy_factory(server.url, big_layer.digest, STALL_AFTER)
    root = tmp_path / "store"
    # Repositories in parallel: the small ones finish while the big one is held.
    config = write_sync_config(tmp_path, root, [{"urls": [proxy.url]}], settings={"concurrency": 4})

    child = _start_sync(config, tmp_path / "first-run.log")
    try:
        # Killed while the big blob is half written, after the small repositories are in
        # (so no small write is cut off and the crash hits the big copy alone).
        reached = wait_until(
            lambda: (
                _big_temporary_size(root, big_layer) >= MID_BLOB
                and all(tag in _tags(root, repo) for repo, tag in small)
            ),
            timeout=WAIT_SECONDS,
            alive=lambda: child.poll() is None,
        )
        assert reached, (tmp_path / "first-run.log").read_text()
        # A clean-up now (another process starting) must leave the live writer alone.
        assert FsStore(root).clean_leftovers() == 0
        assert _big_temporary_size(root, big_layer) >= MID_BLOB
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    # The crash left a partial blob in .tmp, and nothing incomplete is reachable.
    assert _big_temporary_size(root, big_layer) < big_layer.size
    reachable = check_store(root)
    assert big.digest not in set().union(*reachable.values())
    assert big_layer.digest not in set().union(*reachable.values())
    assert BIG_TAG not in _tags(root, BIG_REPO)

    proxy.release()
    run = run_sync(config)
    assert run.code == 0, run.output
    assert temporaries(root) == []
    for (repo, tag), image in {**small, (BIG_REPO, BIG_TAG): big}.items():
        assert mirrored_digest(root, repo, tag) == image.digest, f"{repo}:{tag}"
    assert big_layer.digest in check_store(root)[BIG_REPO]

    bundle = tmp_path / "bundle"
    unpacked = subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{root}/{BIG_REPO}:{BIG_TAG}", str(bundle)],
        capture_output=True,
        timeout=UMOCI_TIMEOUT,
        check=False,
    )
    assert unpacked.returncode == 0, unpacked.stderr.decode()
    assert (bundle / "rootfs/data/big.bin").stat().st_size == BIG_SIZE


# -- a second mirror while the first is mid-blob -----------------------------------------

SHARED_SIZE = 16 * 1024 * 1024


def test_second_mirror_while_the_first_is_mid_blob(
    make_registry: Callable[..., RegistryServer],
    proxy_factory: Callable[[str, str, int], StallingProxy],
    tmp_path: Path,
) -> None:
    """Two mirrors into one root without Redis (nothing shared but the filesystem), the
    second into another repository (the store's lock file keeps a second writer out of
    the first one's): its start-up clean-up spares the first one's live temporary, both
    publish the same blob, both exit 0."""
    server = make_registry()
    layer = _make_big_layer(tmp_path / "shared-layer.tar.gz", SHARED_SIZE)
    big = _push_big_image(server.url, layer)
    proxy = proxy_factory(server.url, layer.digest, STALL_AFTER)
    root = tmp_path / "store"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    held = write_sync_config(tmp_path / "a", root, [{"urls": [proxy.url]}])
    copies = [{"prefix": BIG_REPO, "destination": "copy"}]
    direct = write_sync_config(tmp_path / "b", root, [{"urls": [server.url], "content": copies}])

    first = _start_sync(held, tmp_path / "first.log")
    try:
        assert wait_until(
            lambda: _big_temporary_size(root, layer) >= MID_BLOB,
            timeout=WAIT_SECONDS,
            alive=lambda: first.poll() is None,
        ), (tmp_path / "first.log").read_text()
        second = run_sync(direct)
        assert second.code == 0, second.output
        assert _big_temporary_size(root, layer) >= MID_BLOB, "a live temporary went"
        proxy.release()
        assert first.wait(timeout=WAIT_SECONDS) == 0, (tmp_path / "first.log").read_text()
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGKILL)
            first.wait()
    assert temporaries(root) == []
    for repo in (BIG_REPO, f"copy/{BIG_REPO}"):
        assert mirrored_digest(root, repo, BIG_TAG) == big.digest
        assert layer.digest in check_store(root)[repo]


# -- killed again and again, at whatever it was doing ------------------------------------

LOOP_REPOS = 2
# Each round kills after one more tag, so LOOP_REPOS + 1 rounds are enough; a margin.
KILL_ROUNDS = 2 * LOOP_REPOS


def _tag_count(root: Path) -> int:
    if not root.is_dir():
        return 0
    return sum(len(_tags(root, repo)) for repo in check_store(root))


def _run_until_next_tag(config: Path, root: Path, log: Path) -> int | None:
    """Start a mirror, SIGKILL it as soon as one more tag is listed; its exit code, or
    None if it was killed (it may also finish first)."""
    before = _tag_count(root)
    child = _start_sync(config, log)
    try:
        wait_until(
            lambda: _tag_count(root) > before,
            timeout=WAIT_SECONDS,
            interval=0.002,
            alive=lambda: child.poll() is None,
        )
    finally:
        finished = child.poll()
        child.send_signal(signal.SIGKILL)
        child.wait()
    return finished


def test_killed_after_each_new_tag_stays_consistent(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """Kill the mirror as soon as each new tag appears (so part-way through the next
    image: its blobs, manifests or an index.json): after every kill everything reachable
    is complete, and the next run finishes the job and leaves no temporaries."""
    images: dict[tuple[str, str], Manifest] = {}
    for index in range(LOOP_REPOS):
        seed = ("crash-loop", index)
        image = make_index(seed) if index % 2 else make_image(seed)
        images[(f"crash-loop/r{index}", "v1")] = image
        push_image(registry.url, f"crash-loop/r{index}", "v1", image)
    root = tmp_path / "store"
    entry = {"urls": [registry.url], "content": [{"prefix": "crash-loop/**"}]}
    config = write_sync_config(tmp_path, root, [entry])
    for attempt in range(KILL_ROUNDS):
        code = _run_until_next_tag(config, root, tmp_path / f"run-{attempt}.log")
        check_store(root)
        if code is not None:
            assert code == 0, (tmp_path / f"run-{attempt}.log").read_text()
            break
    run = run_sync(config)
    assert run.code == 0, run.output
    assert temporaries(root) == []
    for (repo, tag), image in images.items():
        assert mirrored_digest(root, repo, tag) == image.digest, f"{repo}:{tag}"


# -- killed after the blobs are written, before index.json is replaced --------------------


def test_killed_between_blobs_written_and_index_replaced(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """The test holds the repository's index lock (the flock on ``<repo>/.lock`` every
    index.json replacement takes), so the mirror writes the image's blobs and manifest and
    then waits to replace index.json: killed there, nothing is reachable, the written
    blobs are complete, and the next run lists the image without fetching any blob again."""
    repo, tag = "crash-commit/app", "v1"
    image = make_image("crash-commit")
    push_image(registry.url, repo, tag, image)
    root = tmp_path / "store"
    entry = {"urls": [registry.url], "content": [{"prefix": "crash-commit/**"}]}
    config = write_sync_config(tmp_path, root, [entry])
    repo_dir = root / repo
    repo_dir.mkdir(parents=True)
    written = {image.digest} | image.all_blob_digests()

    def all_written() -> bool:
        return all((repo_dir / "blobs" / d.replace(":", "/")).is_file() for d in written)

    with (repo_dir / ".lock").open("a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        child = _start_sync(config, tmp_path / "held.log")
        try:
            reached = wait_until(
                all_written, timeout=WAIT_SECONDS, alive=lambda: child.poll() is None
            )
            assert reached, (tmp_path / "held.log").read_text()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    assert not (repo_dir / "index.json").exists()
    assert check_store(root) == {}
    for digest in written:  # complete and verified at their final names
        data = (repo_dir / "blobs" / digest.replace(":", "/")).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest

    gets = registry.blob_gets()
    run = run_sync(config)
    assert run.code == 0, run.output
    assert registry.blob_gets() == gets, "blobs written before the kill were fetched again"
    assert temporaries(root) == []
    assert mirrored_digest(root, repo, tag) == image.digest
    assert written <= check_store(root)[repo]
