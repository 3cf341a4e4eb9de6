"""The registry destination store where it differs from a layout: tags, the referrers tag
schema, crash leftovers, memory. Against real distribution registries; what it pushed is
read back with skopeo or plain HTTP, never only through the store itself."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from syncworker.errors import StoreError
from syncworker.oci import Descriptor, Digest
from syncworker.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from syncworker.retry import classify
from syncworker.store import IndexEntry
from syncworker.store.registry import Destination, RegistryStore
from tests.support.process import kill_when_ready
from tests.support.registry_server import RegistryServer
from tests.test_registry_faults import FAST, Answer, Scripted, server

__all__ = ["server"]  # the stub registry fixture, imported for pytest

MIB = 1 << 20
# Peak RSS of a process holding Python, requests and a few 1 MiB chunks, with a wide margin.
PEAK_RSS_LIMIT_MIB = 150
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
SBOM_TYPE = "application/spdx+json"


@pytest.fixture
def dest(make_registry: Callable[..., RegistryServer]) -> RegistryServer:
    return make_registry()


def store_of(server: RegistryServer) -> RegistryStore:
    return RegistryStore(Destination(server.url))


def put(store: RegistryStore, repo: str, data: bytes) -> Digest:
    digest = Digest.of(data)
    store.put_blob(repo, digest, len(data), [data])
    return digest


def image(
    store: RegistryStore, repo: str, seed: str, subject: bytes | None = None, **extra: Any
) -> bytes:
    """Push a config blob and an OCI manifest (no layers) naming it; the manifest's bytes."""
    config = json.dumps({"seed": seed}).encode()
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": CONFIG_TYPE,
            "digest": str(put(store, repo, config)),
            "size": len(config),
        },
        "layers": [],
        **extra,
    }
    if subject is not None:
        doc["subject"] = {
            "mediaType": OCI_MANIFEST,
            "digest": str(Digest.of(subject)),
            "size": len(subject),
        }
    raw = json.dumps(doc, indent=3).encode()
    store.put_manifest(repo, Digest.of(raw), raw)
    return raw


def entry(raw: bytes, tag: str | None = None) -> IndexEntry:
    return IndexEntry(Descriptor(OCI_MANIFEST, Digest.of(raw), len(raw)), tag)


def raw_at(server: RegistryServer, repo: str, ref: str) -> bytes:
    response = requests.get(
        f"{server.url}/v2/{repo}/manifests/{ref}",
        headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.content


def skopeo_raw(server: RegistryServer, repo: str, tag: str) -> bytes:
    host = server.url.split("://", 1)[1]
    done = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo}:{tag}"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


# -- manifests and tags -------------------------------------------------------------------


def test_manifest_bytes_and_tags_are_pushed_as_they_are(dest: RegistryServer) -> None:
    store = store_of(dest)
    raw = image(store, "team/app", "one")
    assert store.has_manifest("team/app", Digest.of(raw))
    assert not store.has_blob("team/app", Digest.of(raw)), "a manifest is not a blob"
    assert store.index("team/app") == [], "pushed by digest only: no tag yet"
    assert store.update_index("team/app", [entry(raw, "v1")])
    assert skopeo_raw(dest, "team/app", "v1") == raw  # indent=3 and all
    assert store_of(dest).read_blob("team/app", Digest.of(raw)) == raw  # a fresh process
    [listed] = store_of(dest).index("team/app")
    assert (listed.tag, listed.descriptor.digest, listed.descriptor.size) == (
        "v1",
        Digest.of(raw),
        len(raw),
    )


def test_a_tag_already_right_is_not_pushed_again(dest: RegistryServer) -> None:
    store = store_of(dest)
    one, two = image(store, "r", "one"), image(store, "r", "two")
    assert store.update_index("r", [entry(one, "v1"), entry(two, "v2")])
    puts = dest.request_count("manifest", "put")
    assert not store.update_index("r", [entry(one, "v1"), entry(two, "v2")])
    assert not store.update_index("r", [])
    assert dest.request_count("manifest", "put") == puts
    assert store.update_index("r", [entry(two, "v1")])  # a tag moves
    assert {e.tag: e.descriptor.digest for e in store.index("r")} == {
        "v1": Digest.of(two),
        "v2": Digest.of(two),
    }


def test_untagged_referrers_go_into_the_tag_schema_index(dest: RegistryServer) -> None:
    """distribution 2.8 has no referrers API, so the pusher maintains ``sha256-<hex>``."""
    store = store_of(dest)
    subject = image(store, "r", "subject")
    sbom = image(store, "r", "sbom", subject, artifactType=SBOM_TYPE)
    sig = image(store, "r", "sig", subject, annotations={"org.example.k": "v"})
    plain = image(store, "r", "untagged, no subject")
    assert store.update_index("r", [entry(sbom), entry(plain)])
    assert store.update_index("r", [entry(sig)])
    assert not store.update_index("r", [entry(sbom), entry(sig)]), "already listed"
    fallback = json.loads(raw_at(dest, "r", f"sha256-{Digest.of(subject).hex}"))
    assert fallback["mediaType"] == OCI_INDEX
    assert fallback["manifests"] == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": str(Digest.of(sbom)),
            "size": len(sbom),
            "artifactType": SBOM_TYPE,
        },
        {
            "mediaType": OCI_MANIFEST,
            "digest": str(Digest.of(sig)),
            "size": len(sig),
            "annotations": {"org.example.k": "v"},
            "artifactType": CONFIG_TYPE,
        },
    ]


def test_repositories_are_those_with_tags(dest: RegistryServer) -> None:
    store = store_of(dest)
    for repo in ["b", "a/b/c", "a/b", "a"]:
        store.update_index(repo, [entry(image(store, repo, repo), "v1")])
    put(store, "blob-only", b"blob only, no tag yet")
    assert store.repositories() == ["a", "a/b", "a/b/c", "b"]


def test_refused_mount_names_both_repositories(dest: RegistryServer) -> None:
    store = store_of(dest)
    digest = put(store, "holder", b"held")
    with pytest.raises(StoreError, match="elsewhere.*refused"):
        store.link_blob("elsewhere", "dst", digest)
    # A refused mount opens an upload session; it is cancelled, not left behind
    # (distribution keeps only an empty hash state of a cancelled session).
    assert dest.request_count("blob_upload_chunk", "delete", "204") == 1
    uploads = dest.storage_dir / "docker/registry/v2/repositories/dst/_uploads"
    assert list(uploads.glob("*/data")) == list(uploads.glob("*/startedat")) == []


# -- crashes and memory -------------------------------------------------------------------


def test_a_killed_upload_leaves_nothing_reachable_and_hinders_no_retry(
    dest: RegistryServer,
) -> None:
    size = 64 * MIB
    kill_when_ready([sys.executable, "-c", _KILLED_WRITER, dest.url])
    digest = Digest.of(b"k" * size)
    store = store_of(dest)
    assert not store.has_blob("victim", digest)
    sessions = list(
        (dest.storage_dir / "docker/registry/v2/repositories/victim/_uploads").iterdir()
    )
    assert len(sessions) == 1, "the killed upload's session is the registry's to expire"
    assert store.clean_leftovers() == 0
    assert store.put_blob("victim", digest, size, (b"k" * MIB for _ in range(64))) == size
    assert store.has_blob("victim", digest)


# Streams 24 MiB of a 64 MiB blob, says "ready", and waits to be killed.
_KILLED_WRITER = """
import sys, time
from syncworker.oci import Digest
from syncworker.store.registry import Destination, RegistryStore
store = RegistryStore(Destination(sys.argv[1]))
size = 64 * 1024 * 1024
def chunks():
    for i in range(24):
        yield b"k" * (1024 * 1024)
    print("ready", flush=True)
    time.sleep(600)
store.put_blob("victim", Digest.of(b"k" * size), size, chunks())
"""


def test_a_1_gib_blob_streams_with_bounded_memory(
    make_registry: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    """A child process streams 1 GiB into the registry; its peak RSS shows nothing was
    held whole. The registry keeps its storage on disk here, not in /dev/shm."""
    server = make_registry(workdir=tmp_path / "registry")
    child = subprocess.run(
        [sys.executable, "-c", _BIG_WRITER, server.url],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
    assert child.returncode == 0, child.stderr
    figures = json.loads(child.stdout)
    print(f"\n1 GiB put_blob into a registry: {json.dumps(figures)}")
    assert figures["bytes"] == 1024 * MIB
    assert figures["peak_rss_mib"] < PEAK_RSS_LIMIT_MIB, figures
    digest = Digest.parse(figures["digest"])
    head = requests.head(f"{server.url}/v2/big/blobs/{digest}", timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == 1024 * MIB
    stored = next(
        (server.storage_dir / "docker/registry/v2/blobs").glob(f"sha256/*/{digest.hex}/data")
    )
    hasher = hashlib.sha256()
    with stored.open("rb") as data:
        while block := data.read(MIB):
            hasher.update(block)
    assert hasher.hexdigest() == digest.hex


# Generates 1 GiB on the fly (never held whole), hashes it in a first pass, then puts it.
_BIG_WRITER = """
import hashlib, json, random, sys, time
from syncworker.oci import Digest
from syncworker.store.registry import Destination, RegistryStore

MIB, TOTAL, CHUNK = 1 << 20, 1 << 30, 1 << 20
block = random.Random(0).randbytes(CHUNK)
def chunks():
    for i in range(TOTAL // CHUNK):
        yield i.to_bytes(8, "big") + block[8:]
def rss_peak():
    # VmHWM: the peak of this process image (ru_maxrss would carry pytest's over exec).
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
h = hashlib.sha256()
for c in chunks():
    h.update(c)
digest = Digest("sha256", h.hexdigest())
store = RegistryStore(Destination(sys.argv[1]))
start = time.perf_counter()
written = store.put_blob("big", digest, TOTAL, chunks())
seconds = time.perf_counter() - start
print(json.dumps({
    "bytes": written, "digest": str(digest), "seconds": round(seconds, 2),
    "mib_per_s": round(TOTAL / MIB / seconds, 1), "peak_rss_mib": round(rss_peak(), 1),
}))
"""


# -- answers no real registry gives on demand (a scripted stub) ---------------------------


def test_a_throttled_push_is_retried_and_a_refused_one_named(server: Scripted) -> None:
    store = RegistryStore(Destination(server.url, options=FAST))
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode()
    digest = Digest.of(raw)
    throttled, refused = f"/v2/ok/manifests/{digest}", f"/v2/full/manifests/{digest}"
    server.on(
        "PUT",
        throttled,
        Answer(429, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}', {"Retry-After": "0"}),
        Answer(201, headers={"Docker-Content-Digest": str(digest)}),
    )
    store.put_manifest("ok", digest, raw)
    assert server.count("PUT", throttled) == 2
    quota = b'{"errors":[{"code":"DENIED","message":"storage quota exceeded"}]}'
    server.on("PUT", refused, Answer(403, quota))
    host = server.url.split("://", 1)[1]
    with pytest.raises(StoreError, match=f"destination {host}: PUT .*403 DENIED") as caught:
        store.put_manifest("full", digest, raw)
    assert "storage quota exceeded" in str(caught.value)
    assert not classify(caught.value)
    assert server.count("PUT", refused) == 1, "a refusal is not retried"
