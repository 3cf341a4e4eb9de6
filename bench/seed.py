"""The two benchmark data sets, pushed into an upstream registry.

*small*: SMALL_REPOS repositories x SMALL_TAGS tags, each image 3 layers of 256 KiB: one from
a shared pool (base images repeat across repositories) and two of its own; every third tag is
a two-platform OCI index. Built in memory with `tests.support.images` (layers of seeded
random bytes: gzip cannot shrink them).

*big*: a few images whose layers are 50-200 MiB (see BIG_IMAGES), and one image holding a
single 1 GiB layer for the memory measurement. These are generated streaming to files under
a cache directory (never whole in memory) and uploaded streaming (`bigblobs.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.bigblobs import BigLayer, push_big_image
from tests.support.images import (
    DEFAULT_PLATFORMS,
    OCI_INDEX,
    Blob,
    Manifest,
    canonical_json,
    make_image,
    make_layer,
)
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer

__all__ = [
    "BIG_IMAGES",
    "HUGE_LAYER_MIB",
    "DataSet",
    "push_new_tags",
    "seed_big",
    "seed_huge",
    "seed_small",
]

KIB, MIB = 1024, 1024 * 1024
SMALL_REPOS, SMALL_TAGS, SMALL_LAYERS = 50, 5, 3
SMALL_LAYER_SIZE = 256 * KIB
SMALL_POOL = 8  # shared base layers: each is the first layer of about 1 image in 8
INDEX_EVERY = 3  # every third tag is a two-platform index
# Big set: 3 repositories, 400 MiB unique in all. Large enough that bytes dominate requests,
# small enough that ~20 cold copies of it fit a few minutes on a 2-core box.
BIG_IMAGES: tuple[tuple[int, ...], ...] = ((50, 50), (100,), (200,))  # MiB per layer
HUGE_LAYER_MIB = 1024
PUSH_WORKERS = 8


@dataclass
class DataSet:
    """What was pushed: repositories, tags, and every unique blob with a repo that has it."""

    name: str
    repos: list[str] = field(default_factory=list)
    tags: dict[str, list[str]] = field(default_factory=dict)
    blobs: dict[str, tuple[str, int]] = field(default_factory=dict)  # digest -> (repo, size)
    manifests: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tag_count(self) -> int:
        return sum(len(tags) for tags in self.tags.values())

    @property
    def unique_bytes(self) -> int:
        return sum(size for _, size in self.blobs.values())

    def record(self, repo: str, tag: str, manifest: Manifest) -> None:
        with self._lock:
            if repo not in self.tags:
                self.repos.append(repo)
                self.tags[repo] = []
            self.tags[repo].append(tag)
            for item in manifest.walk():
                self.manifests.add(item.digest)
                for blob in item.blobs:
                    self.blobs.setdefault(blob.digest, (repo, blob.size))

    def record_blob(self, repo: str, digest: str, size: int) -> None:
        with self._lock:
            self.blobs.setdefault(digest, (repo, size))


def _index(children: Sequence[Manifest]) -> Manifest:
    """An OCI index over `children` (image-spec image-index.md)."""
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [child.descriptor() for child in children],
    }
    return Manifest(canonical_json(body), OCI_INDEX, children=tuple(children))


def _small_image(seed: object, base: Blob, as_index: bool) -> Manifest:
    def one(platform: tuple[str, str, str | None]) -> Manifest:
        return make_image(
            (seed, platform),
            base=[base],
            layers=SMALL_LAYERS - 1,
            layer_size=SMALL_LAYER_SIZE,
            platform=platform,
        )

    if as_index:
        return _index([one(p) for p in DEFAULT_PLATFORMS])
    return one(DEFAULT_PLATFORMS[0])


def _small_repo(index: int) -> str:
    return f"small/repo-{index:03d}"


def _pool() -> list[Blob]:
    return [make_layer(("bench-pool", i), size=SMALL_LAYER_SIZE) for i in range(SMALL_POOL)]


def _run_all(job: Callable[[int], None], items: Iterable[int]) -> None:
    with ThreadPoolExecutor(max_workers=PUSH_WORKERS) as pool:
        for future in [pool.submit(job, item) for item in items]:
            future.result()  # the first failure stops the benchmark


def seed_small(registry: RegistryServer) -> DataSet:
    """Push the small set (module docstring)."""
    data = DataSet("small")
    pool = _pool()

    def push_repo(index: int) -> None:
        repo = _small_repo(index)
        for tag_index in range(SMALL_TAGS):
            number = index * SMALL_TAGS + tag_index
            image = _small_image(
                ("bench-small", index, tag_index),
                pool[number % len(pool)],
                as_index=number % INDEX_EVERY == INDEX_EVERY - 1,
            )
            push_image(registry.url, repo, f"t{tag_index}", image)
            data.record(repo, f"t{tag_index}", image)

    _run_all(push_repo, range(SMALL_REPOS))
    data.repos.sort()
    return data


def push_one_image(
    registry: RegistryServer, data: DataSet, repo: str, tags: Sequence[str]
) -> Manifest:
    """One small single-platform image under each of `tags`."""
    image = _small_image(("bench-one", repo), _pool()[0], False)
    for tag in tags:
        push_image(registry.url, repo, tag, image)
        data.record(repo, tag, image)
    return image


def push_new_tags(registry: RegistryServer, data: DataSet, round_number: int) -> DataSet:
    """One new single-platform tag `inc-N` in every small repository; what was added (only
    blobs the data set did not hold yet: a mirror of it has the shared pool layers)."""
    added = DataSet(f"small+inc{round_number}")
    pool = _pool()
    known = set(data.blobs)

    def push_repo(index: int) -> None:
        repo, tag = _small_repo(index), f"inc-{round_number}"
        image = _small_image(("bench-inc", index, round_number), pool[index % len(pool)], False)
        push_image(registry.url, repo, tag, image)
        added.record(repo, tag, image)
        data.record(repo, tag, image)

    _run_all(push_repo, range(len(data.repos)))
    added.blobs = {d: where for d, where in added.blobs.items() if d not in known}
    return added


def seed_big(registry: RegistryServer, cache: Path) -> DataSet:
    """Push the big set: one repository per entry of BIG_IMAGES."""
    data = DataSet("big")
    for number, sizes in enumerate(BIG_IMAGES):
        layers = [
            BigLayer.build(cache, size * MIB, ("big", number, i)) for i, size in enumerate(sizes)
        ]
        _push_big(registry, data, f"big/image-{number}", layers)
    return data


def seed_huge(registry: RegistryServer, cache: Path) -> DataSet:
    """Push one image holding a single 1 GiB layer."""
    data = DataSet("huge")
    layer = BigLayer.build(cache, HUGE_LAYER_MIB * MIB, ("huge", 0))
    _push_big(registry, data, "huge/one-gib", [layer])
    return data


def _push_big(registry: RegistryServer, data: DataSet, repo: str, layers: list[BigLayer]) -> None:
    manifest = push_big_image(registry.url, repo, "latest", layers)
    data.record(repo, "latest", manifest)
    for layer in layers:
        data.record_blob(repo, layer.digest, layer.size)
