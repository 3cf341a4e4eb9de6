"""The registry client reads the fixtures' standard corpus exactly as it was pushed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncworker.oci import Digest
from syncworker.oci.mediatypes import DOCKER_FOREIGN_LAYER
from syncworker.registry import ClientOptions, RegistryClient
from tests.support.corpus import Corpus
from tests.support.registry_server import RegistryServer

OPTIONS = ClientOptions(max_retries=1, retry_delay=0.01, timeout=10.0)


@pytest.fixture
def seeded(
    seeded_registry: tuple[RegistryServer, Corpus],
) -> Iterator[tuple[RegistryClient, Corpus]]:
    server, corpus = seeded_registry
    with RegistryClient([server.url], options=OPTIONS) as client:
        yield client, corpus


def test_catalog_and_tags_match(seeded: tuple[RegistryClient, Corpus]) -> None:
    client, corpus = seeded
    assert list(client.catalog()) == corpus.repositories
    for repo, tags in corpus.tags.items():
        assert sorted(client.tags(repo)) == sorted(tags)


def test_every_tag_heads_and_gets_to_its_digest(seeded: tuple[RegistryClient, Corpus]) -> None:
    client, corpus = seeded
    for repo, tags in corpus.tags.items():
        for tag, digest in tags.items():
            assert str(client.head_manifest(repo, tag).digest) == digest
            raw, manifest = client.get_manifest(repo, tag)
            assert str(Digest.of(raw)) == digest == str(manifest.digest)


def test_blobs_of_an_image_stream_verified(seeded: tuple[RegistryClient, Corpus]) -> None:
    client, corpus = seeded
    pushed = corpus["busybox"]
    _, manifest = client.get_manifest(pushed.repo, str(pushed.tag))
    for descriptor in manifest.blobs:
        with client.blob(pushed.repo, descriptor) as chunks:
            assert sum(len(c) for c in chunks) == descriptor.size


def test_referrers_chain_through_the_tag_schema(seeded: tuple[RegistryClient, Corpus]) -> None:
    client, corpus = seeded
    signed, sbom, sbom_signature = corpus["alpine_3.19"], corpus["sbom"], corpus["sbom_signature"]
    [found] = client.referrers(signed.repo, Digest.parse(signed.digest))
    assert str(found.digest) == sbom.digest
    assert found.artifact_type == "application/spdx+json"
    [nested] = client.referrers(sbom.repo, found.digest)
    assert str(nested.digest) == sbom_signature.digest
    assert client.referrers(sbom_signature.repo, nested.digest) == []


def test_foreign_layers_are_visible_as_non_distributable(
    seeded: tuple[RegistryClient, Corpus],
) -> None:
    client, corpus = seeded
    pushed = corpus["foreign"]
    _, manifest = client.get_manifest(pushed.repo, str(pushed.tag))
    foreign = [b for b in manifest.blobs if b.media_type == DOCKER_FOREIGN_LAYER]
    assert foreign and not foreign[0].is_distributable and foreign[0].urls
