"""The registry client against a real CNCF distribution registry (``docker-registry``)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from syncworker.errors import (
    InvalidNameError,
    NotFoundError,
    RegistryError,
    SizeLimitError,
    TransportError,
)
from syncworker.oci import Descriptor, Digest
from syncworker.oci.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
)
from syncworker.registry import ClientOptions, Credentials, RegistryClient
from syncworker.registry import tags as tags_module
from tests.support import push as support_push
from tests.support.images import Blob
from tests.support.registry_server import RegistryServer

FAST = ClientOptions(max_retries=1, retry_delay=0.01, timeout=10.0)
USER, PASSWORD = "mirror", "pa55-w0rd-not-in-logs"
Auth = tuple[str, str] | None


# -- fixtures: tests/conftest.py starts the real registries --------------------------------


def free_port() -> int:
    """A loopback port nothing listens on: a dead upstream URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def client(registry: RegistryServer) -> Iterator[RegistryClient]:
    with RegistryClient([registry.url], options=FAST) as c:
        yield c


@pytest.fixture
def auth_registry(make_registry: Callable[..., RegistryServer]) -> RegistryServer:
    return make_registry(htpasswd=(USER, PASSWORD))


# -- content built and pushed with the client under test ----------------------------------

LAYER_TYPES = {
    OCI_MANIFEST: (
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ),
    DOCKER_MANIFEST: (
        "application/vnd.docker.container.image.v1+json",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ),
}


@dataclass
class Pushed:
    raw: bytes
    digest: Digest
    media_type: str
    blobs: dict[Digest, bytes]


def push_blob(
    client: RegistryClient, repo: str, data: bytes, media_type: str, auth: Auth = None
) -> dict[str, object]:
    """Upload to the client's last URL (the live one in failover tests)."""
    support_push.push_blob(client.urls[-1], repo, Blob(data, media_type), auth)
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}


def push_manifest(
    client: RegistryClient, repo: str, ref: str, raw: bytes, media_type: str, auth: Auth = None
) -> None:
    support_push.push_manifest(client.urls[-1], repo, ref, raw, media_type, auth)


def push_image(
    client: RegistryClient,
    repo: str,
    tag: str | None,
    media_type: str = OCI_MANIFEST,
    seed: str = "",
    layer_size: int = 3000,
    auth: Auth = None,
) -> Pushed:
    config_type, layer_type = LAYER_TYPES[media_type]
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = (seed.encode() + os.urandom(layer_size))[:layer_size]
    body = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": push_blob(client, repo, config, config_type, auth),
        "layers": [push_blob(client, repo, layer, layer_type, auth)],
    }
    raw = json.dumps(body, indent=2).encode()
    digest = Digest.of(raw)
    push_manifest(client, repo, tag or str(digest), raw, media_type, auth)
    blobs = {Digest.of(config): config, Digest.of(layer): layer}
    return Pushed(raw, digest, media_type, blobs)


def push_index(
    client: RegistryClient, repo: str, tag: str, children: list[Pushed], media_type: str
) -> Pushed:
    entries = [
        {
            "mediaType": c.media_type,
            "digest": str(c.digest),
            "size": len(c.raw),
            "platform": {"os": "linux", "architecture": arch},
        }
        for c, arch in zip(children, ["amd64", "arm64"], strict=False)
    ]
    raw = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}).encode()
    push_manifest(client, repo, tag, raw, media_type)
    return Pushed(raw, Digest.of(raw), media_type, {})


# -- tests --------------------------------------------------------------------------------


def test_ping(client: RegistryClient) -> None:
    client.ping()
    assert client.stats.snapshot().requests == 1


def test_catalog_pages_with_a_small_n(client: RegistryClient) -> None:
    names = [f"rc-pages/repo{i}" for i in range(5)]
    for name in names:
        push_image(client, name, "v1", seed=name)
    listed: list[str] = []
    last: str | None = None
    pages = 0
    while True:
        page, last = client.catalog_page(last, n=2)
        assert len(page) <= 2
        listed += page
        pages += 1
        if last is None:
            break
    assert pages >= 3
    assert [n for n in listed if n.startswith("rc-pages/")] == names
    assert [n for n in client.catalog() if n.startswith("rc-pages/")] == names


def test_catalog_never_asks_for_more_than_1000(client: RegistryClient) -> None:
    names, _ = client.catalog_page(None, n=5000)  # a registry would refuse n > 1000
    assert isinstance(names, list)


def test_tags_all_pages(client: RegistryClient) -> None:
    image = push_image(client, "rc/tagged", "v0", seed="tags")
    wanted = {f"v{i}" for i in range(7)}
    for tag in wanted - {"v0"}:
        push_manifest(client, "rc/tagged", tag, image.raw, image.media_type)
    assert set(client.tags("rc/tagged")) == wanted
    # distribution 2.8 ignores n on tag lists (Link pages are tested on a scripted server);
    # asking for small pages must still give every tag.
    transport = client._t  # noqa: SLF001 - the page size is internal
    assert sorted(tags_module.tags(transport, "rc/tagged", page_size=2)) == sorted(wanted)


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_manifest_head_and_get(client: RegistryClient, media_type: str) -> None:
    image = push_image(client, "rc/manifests", media_type.rsplit(".", 2)[-2], media_type)
    tag = media_type.rsplit(".", 2)[-2]
    descriptor = client.head_manifest("rc/manifests", tag)
    assert descriptor == Descriptor(media_type, image.digest, len(image.raw))
    raw, manifest = client.get_manifest("rc/manifests", tag)
    assert raw == image.raw
    assert (manifest.media_type, manifest.digest) == (media_type, image.digest)
    assert {b.digest for b in manifest.blobs} == set(image.blobs)
    by_digest, _ = client.get_manifest("rc/manifests", str(image.digest))
    assert by_digest == image.raw
    assert client.head_manifest("rc/manifests", str(image.digest)).digest == image.digest


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_index_and_manifest_list(client: RegistryClient, media_type: str) -> None:
    child_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
    children = [push_image(client, "rc/multi", None, child_type, seed=s) for s in "ab"]
    index = push_index(client, "rc/multi", "latest", children, media_type)
    raw, manifest = client.get_manifest("rc/multi", "latest")
    assert raw == index.raw and manifest.is_index
    assert [c.digest for c in manifest.children] == [c.digest for c in children]
    assert [str(c.platform) for c in manifest.children] == ["linux/amd64", "linux/arm64"]


def test_blob_streamed_and_verified(client: RegistryClient) -> None:
    image = push_image(client, "rc/blob-big", "v1", layer_size=3 * 1024 * 1024 + 17)
    _, manifest = client.get_manifest("rc/blob-big", "v1")
    layer = manifest.blobs[-1]
    before = client.stats.snapshot()
    with client.blob("rc/blob-big", layer) as chunks:
        parts = list(chunks)
    assert len(parts) >= 3 and max(len(p) for p in parts) <= 1024 * 1024
    assert b"".join(parts) == image.blobs[layer.digest]
    after = client.stats.snapshot()
    assert after.blob_gets == before.blob_gets + 1
    assert after.bytes_downloaded - before.bytes_downloaded == layer.size


def test_blob_with_a_wrong_declared_size_is_refused(client: RegistryClient) -> None:
    image = push_image(client, "rc/blob-size", "v1")
    digest, data = next(iter(image.blobs.items()))
    wrong = Descriptor("application/octet-stream", digest, len(data) + 1)
    with pytest.raises(SizeLimitError), client.blob("rc/blob-size", wrong) as chunks:
        list(chunks)


def test_missing_things_are_not_found_and_not_retried(client: RegistryClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.get_manifest("nothing/here", "v1")
    assert caught.value.status == 404 and caught.value.method == "GET"
    assert caught.value.codes in {("MANIFEST_UNKNOWN",), ("NAME_UNKNOWN",)}
    with pytest.raises(NotFoundError):
        client.head_manifest("nothing/here", "v1")
    missing = Descriptor("x", Digest.of(b"never pushed"), 12)
    with pytest.raises(NotFoundError), client.blob("nothing/here", missing):
        pass
    assert client.stats.snapshot().retries == 0


def test_invalid_names_never_reach_the_wire(client: RegistryClient) -> None:
    for repo, ref in [("../etc", "v1"), ("ok", "../../x"), ("UPPER", "v1"), ("a//b", "v1")]:
        with pytest.raises(InvalidNameError):
            client.get_manifest(repo, ref)
    assert client.stats.snapshot().requests == 0


def test_referrers_from_the_tag_schema(client: RegistryClient) -> None:
    subject = push_image(client, "rc/signed", "v1", seed="subject")
    assert client.referrers("rc/signed", subject.digest) == []
    empty = push_blob(client, "rc/signed", b"{}", "application/vnd.oci.empty.v1+json")
    artifact = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": empty,
        "layers": [empty],
        "subject": {
            "mediaType": OCI_MANIFEST,
            "digest": str(subject.digest),
            "size": len(subject.raw),
        },
    }
    raw = json.dumps(artifact).encode()
    push_manifest(client, "rc/signed", str(Digest.of(raw)), raw, OCI_MANIFEST)
    entry = {
        "mediaType": OCI_MANIFEST,
        "digest": str(Digest.of(raw)),
        "size": len(raw),
        "artifactType": "application/vnd.example.sbom",
    }
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})
    push_manifest(client, "rc/signed", f"sha256-{subject.digest.hex}", index.encode(), OCI_INDEX)
    [found] = client.referrers("rc/signed", subject.digest)
    assert found.digest == Digest.of(raw)
    assert found.artifact_type == "application/vnd.example.sbom"


def test_failover_from_a_dead_url_to_a_live_one(registry: RegistryServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with RegistryClient([dead, registry.url], options=FAST) as client:
        push_image(client, "rc/failover", "v1")
        assert "v1" in client.tags("rc/failover")
        before = client.stats.snapshot().requests
        client.head_manifest("rc/failover", "v1")
        # The working URL is remembered: no more attempts on the dead one.
        assert client.stats.snapshot().requests == before + 1


def test_all_urls_dead_is_a_transport_error() -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    with RegistryClient(dead, options=FAST) as client, pytest.raises(TransportError) as caught:
        client.ping()
    assert "Connection refused" in str(caught.value)
    assert client.stats.snapshot().retries == 2  # one retry per URL


def test_basic_auth(auth_registry: RegistryServer) -> None:
    creds = Credentials(USER, PASSWORD)
    with RegistryClient([auth_registry.url], creds, FAST) as client:
        client.ping()
        image = push_image(client, "private/app", "v1", auth=(USER, PASSWORD))
        assert client.get_manifest("private/app", "v1")[0] == image.raw
        assert "private/app" in list(client.catalog())


def test_basic_auth_failures_name_no_secret(auth_registry: RegistryServer) -> None:
    with RegistryClient([auth_registry.url], options=FAST) as anonymous:
        anonymous.ping()  # a 401 from /v2/ is an answer
        with pytest.raises(RegistryError) as caught:
            anonymous.tags("private/app")
    assert caught.value.status == 401 and caught.value.codes == ("UNAUTHORIZED",)
    wrong = Credentials(USER, "wrong-" + PASSWORD)
    with RegistryClient([auth_registry.url], wrong, FAST) as client:
        with pytest.raises(RegistryError) as caught:
            client.tags("private/app")
        assert caught.value.status == 401
        assert client.stats.snapshot().retries == 0
    for text in (str(caught.value), repr(caught.value), repr(wrong), repr(client)):
        assert PASSWORD not in text
