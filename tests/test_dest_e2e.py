"""``syncworker sync`` into a registry: two real distribution registries, one upstream
(the standard corpus), one destination; everything read back with skopeo and checked on
the destination's own request counters."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from syncworker.oci import MANIFEST_ACCEPT
from tests.support.corpus import Corpus
from tests.support.images import make_image
from tests.support.mirror import run_sync, write_sync_config
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer

Seeded = tuple[RegistryServer, Corpus]
SKOPEO_TIMEOUT = 60.0


def dest_config(
    tmp_path: Path,
    upstream: RegistryServer,
    dest_url: str,
    *,
    dest: dict[str, Any] | None = None,
    credentials: dict[str, dict[str, str]] | None = None,
    content: list[dict[str, Any]] | None = None,
) -> Path:
    entry: dict[str, Any] = {"urls": [upstream.url]}
    if content is not None:
        entry["content"] = content
    return write_sync_config(
        tmp_path,
        tmp_path / "unused-root",
        [entry],
        settings={"destination": {"url": dest_url, **(dest or {})}},
        credentials=credentials,
    )


def skopeo_digest(url: str, repo: str, tag: str, *extra: str) -> str:
    """The digest of what skopeo reads at ``docker://<host>/<repo>:<tag>``."""
    host = url.split("://", 1)[1]
    tls = ["--tls-verify=false"] if url.startswith("http://") else []
    done = subprocess.run(
        ["skopeo", "inspect", "--raw", *tls, *extra, f"docker://{host}/{repo}:{tag}"],
        capture_output=True,
        timeout=SKOPEO_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"skopeo cannot read {repo}:{tag}: {done.stderr.decode()}"
    return "sha256:" + hashlib.sha256(done.stdout).hexdigest()


def dest_tags(server: RegistryServer, repo: str) -> list[str]:
    response = requests.get(f"{server.url}/v2/{repo}/tags/list", timeout=30)
    response.raise_for_status()
    return sorted(response.json()["tags"] or [])


def counters(server: RegistryServer) -> Callable[[], dict[tuple[str, str, str], int]]:
    """A function giving the requests served since now, by (handler, method, status)."""
    before = server.metrics()

    def delta() -> dict[tuple[str, str, str], int]:
        return {
            (key.handler, key.method, key.code): int(value - before.get(key, 0))
            for key, value in server.metrics().items()
            if value != before.get(key, 0)
        }

    return delta


def total(spent: dict[tuple[str, str, str], int], handler: str, method: str) -> int:
    return sum(n for (h, m, _), n in spent.items() if (h, m) == (handler, method))


def test_corpus_mirrored_into_a_registry_byte_for_byte(
    seeded_registry: Seeded, make_registry: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    upstream, corpus = seeded_registry
    dest = make_registry()
    run = run_sync(dest_config(tmp_path, upstream, dest.url))
    assert run.code == 0, run.output
    for repo, tags in corpus.tags.items():
        assert dest_tags(dest, repo) == sorted(tags), repo
        for tag, digest in tags.items():
            assert skopeo_digest(dest.url, repo, tag) == digest, f"{repo}:{tag}"
    # Untagged referrers (the SBOM and its signature) are there by digest too.
    for repo, digests in corpus.manifests.items():
        for digest in digests:
            head = requests.head(
                f"{dest.url}/v2/{repo}/manifests/{digest}",
                headers={"Accept": MANIFEST_ACCEPT},
                timeout=30,
            )
            assert head.status_code == 200, f"{repo}@{digest}"
    assert not (tmp_path / "unused-root").exists(), "nothing is written to rootDirectory"


def test_shared_layers_are_mounted_and_a_noop_costs_a_request_per_tag(
    seeded_registry: Seeded, make_registry: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    upstream, corpus = seeded_registry
    dest = make_registry()
    config = dest_config(tmp_path, upstream, dest.url)
    cold, fetched = counters(dest), upstream.blob_gets()
    assert run_sync(config).code == 0
    first = cold()
    # Each unique blob is fetched and uploaded once; every other copy is a mount.
    unique = set().union(*corpus.blobs.values())
    assert upstream.blob_gets() - fetched == len(unique)
    assert first[("blob_upload_chunk", "put", "201")] == len(unique), first
    assert first[("blob_upload", "post", "202")] == len(unique), first
    mounts = sum(len(b) for b in corpus.blobs.values()) - len(unique)
    assert mounts > 0 and first[("blob_upload", "post", "201")] == mounts, first
    assert total(first, "blob_upload_chunk", "delete") == 0, "no mount was refused"

    tags = sum(len(t) for t in corpus.tags.values())
    noop, up = counters(dest), counters(upstream)
    second = run_sync(config)
    assert second.code == 0, second.output
    assert "0 images copied" in second.stdout
    spent = noop()
    # One tag list per repository and one GET per tag; nothing else, nothing written.
    assert spent == {
        ("tags", "get", "200"): len(corpus.tags),
        ("manifest", "get", "200"): tags,
    }, spent
    assert total(up(), "manifest", "head") == tags


def test_a_tag_moved_or_deleted_on_the_destination_is_repaired(
    registry: RegistryServer, make_registry: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    repo = "dest/repair"
    image = make_image("dest-repair")
    other = make_image("dest-repair-other")
    push_image(registry.url, repo, "v1", image)
    push_image(registry.url, repo, "v2", image)
    dest = make_registry()
    config = dest_config(tmp_path, registry, dest.url, content=[{"prefix": repo}])
    assert run_sync(config).code == 0
    push_image(dest.url, repo, "v1", other)  # moved behind our back
    deleted = requests.delete(f"{dest.url}/v2/{repo}/manifests/{image.digest}", timeout=30)
    assert deleted.status_code == 202  # v2 is gone with it
    assert dest_tags(dest, repo) == ["v1"]
    run = run_sync(config)
    assert run.code == 0, run.output
    assert skopeo_digest(dest.url, repo, "v1") == image.digest
    assert skopeo_digest(dest.url, repo, "v2") == image.digest


def test_tls_and_basic_auth_on_the_destination(
    registry: RegistryServer,
    make_registry: Callable[..., RegistryServer],
    tls_certs: Any,
    tmp_path: Path,
) -> None:
    repo = "dest/secure"
    image = make_image("dest-secure")
    push_image(registry.url, repo, "v1", image)
    dest = make_registry(htpasswd=("pusher", "s3cret-pw"), tls=tls_certs.server)
    config = dest_config(
        tmp_path,
        registry,
        dest.url,
        dest={"certDir": str(tls_certs.cert_dir)},
        credentials={dest.host: {"username": "pusher", "password": "s3cret-pw"}},
        content=[{"prefix": repo}],
    )
    run = run_sync(config)
    assert run.code == 0, run.output
    assert "s3cret-pw" not in run.output
    assert (
        skopeo_digest(
            dest.url,
            repo,
            "v1",
            "--creds",
            "pusher:s3cret-pw",
            "--cert-dir",
            str(tls_certs.cert_dir),
        )
        == image.digest
    )


def test_a_destination_refusing_us_fails_the_repository_by_name(
    registry: RegistryServer,
    make_registry: Callable[..., RegistryServer],
    tmp_path: Path,
) -> None:
    repo = "dest/refused"
    push_image(registry.url, repo, "v1", make_image("dest-refused"))
    dest = make_registry(htpasswd=("pusher", "right-password"))
    config = dest_config(
        tmp_path,
        registry,
        dest.url,
        credentials={dest.host: {"username": "pusher", "password": "wrong-password"}},
        content=[{"prefix": repo}],
    )
    run = run_sync(config)
    assert run.code == 1
    assert f"destination {dest.host}" in run.stdout and "401" in run.stdout, run.output
    assert repo in run.stdout
    assert "wrong-password" not in run.output


@pytest.mark.parametrize("same", ["{url}", "{url}/", "http://localhost:{port}"])
def test_destination_equal_to_an_upstream_is_refused(
    registry: RegistryServer, tmp_path: Path, same: str
) -> None:
    port = registry.host.rsplit(":", 1)[1]
    config = dest_config(tmp_path, registry, same.format(url=registry.url, port=port))
    run = run_sync(config)
    assert run.code != 0
    assert "syncworker.destination.url" in run.output, run.output


def test_bad_destination_fields_are_named(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        json.dumps(
            {
                "storage": {"rootDirectory": str(tmp_path)},
                "syncworker": {
                    "destination": {"url": "ftp://x", "tlsverify": "maybe", "certDirr": "/x"}
                },
            }
        )
    )
    from syncworker.config import validate

    problems = validate(config)
    assert any(p.startswith("syncworker.destination.url:") for p in problems), problems
    assert any(p.startswith("syncworker.destination.tlsVerify:") for p in problems), problems
    assert any(p.startswith("syncworker.destination.certDirr:") for p in problems), problems
