"""The registry, pusher and corpus fixtures work against a real distribution 2.8 and skopeo."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import requests

from tests.support.corpus import Corpus
from tests.support.images import OCI_INDEX, make_image, referrers_tag
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer

SKOPEO_TIMEOUT = 60


def skopeo_inspect(host: str, ref: str, *extra: str) -> Any:
    result = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", *extra, f"docker://{host}/{ref}"],
        capture_output=True,
        text=True,
        timeout=SKOPEO_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_pushed_image_reads_back_with_skopeo(registry: RegistryServer) -> None:
    image = make_image("support-roundtrip")
    push_image(registry.url, "support/roundtrip", "v1", image)
    assert skopeo_inspect(registry.host, "support/roundtrip:v1", "--raw") == image.json
    assert skopeo_inspect(registry.host, "support/roundtrip:v1")["Digest"] == image.digest


def test_catalog_and_tags_match_corpus(seeded_registry: tuple[RegistryServer, Corpus]) -> None:
    server, corpus = seeded_registry
    catalog = requests.get(f"{server.url}/v2/_catalog", timeout=30).json()
    assert catalog["repositories"] == corpus.repositories
    for repo, tags in corpus.tags.items():
        listed = requests.get(f"{server.url}/v2/{repo}/tags/list", timeout=30).json()
        assert sorted(listed["tags"]) == sorted(tags)


def test_every_tag_digest_matches_skopeo(seeded_registry: tuple[RegistryServer, Corpus]) -> None:
    server, corpus = seeded_registry
    for name in ("alpine_3.19", "docker_image", "oci_index", "docker_list", "foreign"):
        pushed = corpus[name]
        raw = skopeo_inspect(server.host, f"{pushed.repo}:{pushed.tag}", "--raw")
        assert raw == pushed.manifest.json
        digest = requests.head(
            f"{server.url}/v2/{pushed.repo}/manifests/{pushed.tag}",
            headers={"Accept": pushed.media_type},
            timeout=30,
        ).headers["Docker-Content-Digest"]
        assert digest == corpus.digest(pushed.repo, str(pushed.tag)) == pushed.digest


def test_referrers_tag_schema_lists_nested_referrers(
    seeded_registry: tuple[RegistryServer, Corpus],
) -> None:
    server, corpus = seeded_registry
    image, sbom, signature = corpus["alpine_3.19"], corpus["sbom"], corpus["sbom_signature"]
    for subject, referrer in ((image, sbom), (sbom, signature)):
        url = f"{server.url}/v2/{image.repo}/manifests/{referrers_tag(subject.digest)}"
        index = requests.get(url, headers={"Accept": OCI_INDEX}, timeout=30).json()
        assert [d["digest"] for d in index["manifests"]] == [referrer.digest]
        assert index["manifests"][0]["artifactType"] == referrer.manifest.artifact_type


def test_metrics_count_blob_gets(registry: RegistryServer) -> None:
    image = make_image("support-metrics")
    push_image(registry.url, "support/metrics", "v1", image)
    before = registry.blob_gets()
    layer = image.blobs[1]
    response = requests.get(f"{registry.url}/v2/support/metrics/blobs/{layer.digest}", timeout=30)
    assert response.content == layer.data
    assert registry.blob_gets() == before + 1


def test_handler_labels(registry: RegistryServer) -> None:
    image = make_image("support-labels")
    push_image(registry.url, "support/labels", "v1", image)
    requests.get(f"{registry.url}/v2/_catalog", timeout=30)
    requests.get(f"{registry.url}/v2/support/labels/tags/list", timeout=30)
    requests.get(f"{registry.url}/v2/support/labels/manifests/v1", timeout=30)
    handlers = {key.handler for key in registry.metrics()}
    expected = {"base", "catalog", "tags", "manifest", "blob", "blob_upload", "blob_upload_chunk"}
    assert expected <= handlers
    assert registry.request_count(handler="manifest", method="PUT", code="201") >= 1


def test_restart_keeps_content(make_registry: Any) -> None:
    server: RegistryServer = make_registry()
    image = make_image("support-restart")
    push_image(server.url, "support/restart", "v1", image)
    server.kill()
    assert not server.running()
    server.restart()
    assert skopeo_inspect(server.host, "support/restart:v1")["Digest"] == image.digest


def test_basic_auth_rejects_anonymous(make_registry: Any) -> None:
    server: RegistryServer = make_registry(htpasswd=("alice", "s3cret"))
    assert requests.get(f"{server.url}/v2/", timeout=30).status_code == 401
    assert requests.get(f"{server.url}/v2/", auth=("alice", "s3cret"), timeout=30).ok
    push_image(server.url, "private/app", "v1", make_image("private"), auth=("alice", "s3cret"))
