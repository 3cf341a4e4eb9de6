"""`python -m bench.httpcost`: the client's CPU per blob GET, per manifest HEAD, and per
no-op of a one-tag repository.

Pushes BLOBS layers of 256 KiB and one image to a fresh registry, then reads the blobs
(BLOBS GETs) and HEADs the image's tag (BLOBS times), one thread, with: syncworker's
RegistryClient (session, auth, limits, digest check), a bare `requests` session, and
urllib3's pool directly; the blob digest is computed in every mode so only the HTTP
layers differ. Then what a no-op of a one-tag repository asks a registry without the
referrers API (its tag list and its manifest's HEAD), BLOBS times, with the client,
urllib3's pool and the standard library's `http.client` on one kept-alive connection: the
floor each HTTP library sets under the engine's no-op. Prints CPU ms per request or per
repository (the median of REPS rounds, this process only: the registry's CPU is not
counted).
"""

from __future__ import annotations

import hashlib
import http.client
import statistics
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import requests
import urllib3

from syncworker.oci import MANIFEST_ACCEPT, Descriptor, Digest
from syncworker.registry import RegistryClient
from tests.support.images import make_image, make_layer
from tests.support.push import push_blob, push_image
from tests.support.registry_server import RegistryServer

__all__ = ["main"]

BLOBS = 300
REPS = 5
REPO = "http/cost"
TAG = "v1"
CHUNK = 1024 * 1024
HEAD_HEADERS = {"Accept": MANIFEST_ACCEPT}


def _ours(url: str, descriptors: list[Descriptor]) -> Callable[[], None]:
    client = RegistryClient([url])

    def read() -> None:
        for descriptor in descriptors:
            with client.blob(REPO, descriptor) as chunks:
                for _ in chunks:
                    pass

    return read


def _requests(url: str, descriptors: list[Descriptor]) -> Callable[[], None]:
    session = requests.Session()

    def read() -> None:
        for d in descriptors:
            with session.get(f"{url}/v2/{REPO}/blobs/{d.digest}", stream=True) as response:
                digest = hashlib.sha256()
                for chunk in response.iter_content(CHUNK):
                    digest.update(chunk)

    return read


def _urllib3(url: str, descriptors: list[Descriptor]) -> Callable[[], None]:
    pool = urllib3.PoolManager(maxsize=8)

    def read() -> None:
        for d in descriptors:
            response = pool.request(
                "GET", f"{url}/v2/{REPO}/blobs/{d.digest}", preload_content=False
            )
            digest = hashlib.sha256()
            while chunk := response.read1(CHUNK):
                digest.update(chunk)
            response.release_conn()

    return read


def _repeated(call: Callable[[], object]) -> Callable[[], None]:
    """``call`` made BLOBS times in a row."""

    def run() -> None:
        for _ in range(BLOBS):
            call()

    return run


def _heads(url: str) -> dict[str, Callable[[], None]]:
    client = RegistryClient([url])
    session = requests.Session()
    pool = urllib3.PoolManager(maxsize=8)
    target = f"{url}/v2/{REPO}/manifests/{TAG}"

    return {
        "syncworker client": _repeated(lambda: client.head_manifest(REPO, TAG)),
        "requests": _repeated(lambda: session.head(target, headers=HEAD_HEADERS)),
        "urllib3 pool": _repeated(lambda: pool.request("HEAD", target, headers=HEAD_HEADERS)),
    }


def _noops(url: str) -> dict[str, Callable[[], None]]:
    """A one-tag repository's no-op: ``GET`` its tag list, ``HEAD`` its tag's manifest."""
    client = RegistryClient([url])
    tags, manifest = f"/v2/{REPO}/tags/list", f"/v2/{REPO}/manifests/{TAG}"
    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.hostname and parts.port, url
    pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port, maxsize=1)
    connection = http.client.HTTPConnection(parts.hostname, parts.port)

    def ours() -> None:
        client.tags(REPO)
        client.head_manifest(REPO, TAG)

    def pooled() -> None:
        for method, path, headers in (("GET", tags, {}), ("HEAD", manifest, HEAD_HEADERS)):
            response = pool.urlopen(method, path, headers=headers, preload_content=False)
            response.read()
            response.release_conn()

    def bare() -> None:
        for method, path, headers in (("GET", tags, {}), ("HEAD", manifest, HEAD_HEADERS)):
            connection.request(method, path, headers=headers)
            connection.getresponse().read()

    return {
        "syncworker client": _repeated(ours),
        "urllib3 pool": _repeated(pooled),
        "http.client": _repeated(bare),
    }


def _cpu_ms_each(read: Callable[[], None], count: int) -> float:
    read()  # warm: connections, tokens, imports
    rounds = []
    for _ in range(REPS):
        before = time.process_time()
        read()
        rounds.append((time.process_time() - before) * 1000 / count)
    return statistics.median(rounds)


def main() -> None:
    with RegistryServer() as registry:
        descriptors = []
        for i in range(BLOBS):
            layer = make_layer(("httpcost", i), size=256 * 1024)
            push_blob(registry.url, REPO, layer)
            descriptors.append(
                Descriptor(layer.media_type, Digest.parse(layer.digest), len(layer.data))
            )
        push_image(registry.url, REPO, TAG, make_image("httpcost"))
        for name, make in (("syncworker client", _ours), ("requests", _requests),
                           ("urllib3 pool", _urllib3)):  # fmt: skip
            ms = _cpu_ms_each(make(registry.url, descriptors), BLOBS)
            print(f"{name:18} {ms:.2f} CPU ms per 256 KiB blob", flush=True)
        for name, heads in _heads(registry.url).items():
            ms = _cpu_ms_each(heads, BLOBS)
            print(f"{name:18} {ms:.2f} CPU ms per manifest HEAD", flush=True)
        for name, noops in _noops(registry.url).items():
            ms = _cpu_ms_each(noops, BLOBS)
            print(f"{name:18} {ms:.2f} CPU ms per one-tag repository no-op", flush=True)


if __name__ == "__main__":
    main()
