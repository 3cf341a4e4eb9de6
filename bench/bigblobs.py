"""Layers too big for memory: generated streaming into a cache file, uploaded streaming.

A layer is a real gzip'd tar holding one file of seeded random bytes. gzip runs at level 0
(stored blocks): random bytes do not compress anyway, and level 1 would cost ~35 s per GiB
on this class of CPU. Files are cached under the bench's output directory by size and seed,
so a second benchmark run does not generate them again.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import requests

from tests.support.images import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Blob, Manifest, canonical_json
from tests.support.push import push_image

__all__ = ["BigLayer", "push_big_image"]

CHUNK = 1024 * 1024  # generation and hashing block
UPLOAD_TIMEOUT = 600.0


class _RandomReader(io.RawIOBase):
    """`size` seeded random bytes, produced as they are read."""

    def __init__(self, size: int, seed: object) -> None:
        self._left = size
        self._rng = random.Random(hashlib.sha256(repr(seed).encode()).digest())

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        self._left -= n
        return self._rng.randbytes(n)


class _HashingWriter(io.RawIOBase):
    """Passes writes through to `target` and hashes them."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self.sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        self._target.write(view)
        return len(view)


@dataclass(frozen=True)
class BigLayer:
    path: Path
    digest: str
    diff_id: str
    size: int

    @classmethod
    def build(cls, cache: Path, content_size: int, seed: object) -> BigLayer:
        """The cached layer for (`content_size`, `seed`), generating it on first use."""
        key = hashlib.sha256(repr((content_size, seed)).encode()).hexdigest()[:16]
        path, meta = cache / f"layer-{key}.tar.gz", cache / f"layer-{key}.json"
        if path.exists() and meta.exists():
            info = json.loads(meta.read_text())
            return cls(path, info["digest"], info["diff_id"], info["size"])
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with partial.open("wb") as raw:
            compressed = _HashingWriter(raw)
            with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=0, mtime=0) as gz:
                plain = _HashingWriter(gz)
                with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    info = tarfile.TarInfo("data/random.bin")
                    info.size, info.mtime, info.mode = content_size, 0, 0o644
                    tar.addfile(info, _RandomReader(content_size, seed))
        partial.rename(path)
        layer = cls(
            path,
            "sha256:" + compressed.sha256.hexdigest(),
            "sha256:" + plain.sha256.hexdigest(),
            path.stat().st_size,
        )
        meta.write_text(
            json.dumps({"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size})
        )
        return layer

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": OCI_LAYER, "digest": self.digest, "size": self.size}


def _upload(session: requests.Session, base: str, layer: BigLayer) -> None:
    """POST then one monolithic PUT whose body streams from the file (distribution-spec)."""
    if session.head(f"{base}/blobs/{layer.digest}", timeout=60).status_code == 200:
        return
    start = session.post(f"{base}/blobs/uploads/", timeout=60)
    start.raise_for_status()
    location = urljoin(base, start.headers["Location"])
    separator = "&" if "?" in location else "?"
    with layer.path.open("rb") as body:
        done = session.put(
            f"{location}{separator}{urlencode({'digest': layer.digest})}",
            data=body,
            headers={"Content-Type": "application/octet-stream"},
            timeout=UPLOAD_TIMEOUT,
        )
    done.raise_for_status()


def push_big_image(registry_url: str, repo: str, tag: str, layers: list[BigLayer]) -> Manifest:
    """Upload `layers`, then a config and manifest naming them; the manifest pushed."""
    base = registry_url.rstrip("/") + f"/v2/{repo}"
    with requests.Session() as session:
        for layer in layers:
            _upload(session, base, layer)
    config = Blob(
        canonical_json(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            }
        ),
        OCI_CONFIG,
    )
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    manifest = Manifest(canonical_json(body), OCI_MANIFEST, blobs=(config,))
    push_image(registry_url, repo, tag, manifest)
    return manifest
