"""The read limit: GET every unique blob once, in parallel, throwing the bytes away (or, as
a plain copier, hashing and writing them).

Two readers, because a Python reader may itself be the bound: `requests` in threads (the
same HTTP stack syncworker uses; its CPU time over wall time shows whether the GIL is the
limit) and `curl --parallel` (C, one process). The faster one is the read limit.
"""

from __future__ import annotations

import hashlib
import resource
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.seed import DataSet

__all__ = ["ReadResult", "read_with_curl", "read_with_requests"]

READERS = 8  # parallel GETs: as many as syncworker's default concurrency
CHUNK = 1024 * 1024
TIMEOUT = 600.0


@dataclass(frozen=True)
class ReadResult:
    wall: float
    cpu: float  # CPU seconds the reader used (user + system)
    bytes_read: int


def _blob_urls(base_url: str, data: DataSet) -> list[str]:
    return [f"{base_url}/v2/{repo}/blobs/{digest}" for digest, (repo, _) in data.blobs.items()]


def read_with_requests(
    base_url: str, data: DataSet, readers: int = READERS, into: Path | None = None
) -> ReadResult:
    """With ``into``, a plain copier instead: each blob is also hashed (sha256) and written
    to a file of its own there, as any mirror must, with no check and no durability."""
    local = threading.local()

    def fetch(url: str) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        count = 0
        with local.session.get(url, stream=True, timeout=TIMEOUT) as response, ExitStack() as out:
            response.raise_for_status()
            sink = out.enter_context((into / url.rsplit(":", 1)[1]).open("wb")) if into else None
            digest = hashlib.sha256() if into else None
            for chunk in response.iter_content(CHUNK):
                count += len(chunk)
                if sink is not None and digest is not None:
                    digest.update(chunk)
                    sink.write(chunk)
        return count

    cpu_before = time.process_time()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=readers) as pool:
        total = sum(pool.map(fetch, _blob_urls(base_url, data)))
    return ReadResult(time.perf_counter() - start, time.process_time() - cpu_before, total)


def read_with_curl(
    base_url: str, data: DataSet, workdir: Path, readers: int = READERS
) -> ReadResult:
    config = workdir / "curl-urls.txt"
    config.write_text(
        "".join(f'url = "{u}"\noutput = "/dev/null"\n' for u in _blob_urls(base_url, data))
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--fail",
            "--parallel",
            "--parallel-max",
            str(readers),
            "--write-out",
            "%{size_download}\\n",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    total = sum(int(line) for line in result.stdout.split() if line.isdigit())
    return ReadResult(wall, cpu, total)
