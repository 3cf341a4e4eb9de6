"""``syncworker sync`` into a registry: two real distribution registries, one upstream
(the standard corpus), one destination; everything read back with skopeo and checked on
the destination's own request counters."""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from syncworker.config import load_config, validate
from syncworker.config.mirrorbuild import build_mirror
from syncworker.config.storeopen import store_for
from syncworker.engine import LocalLocks
from syncworker.oci import MANIFEST_ACCEPT
from tests.support.corpus import Corpus
from tests.support.images import make_image, make_layer
from tests.support.mirror import run_sync, write_sync_config
from tests.support.ports import wait_until
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer
from tests.support.stalling_proxy import StallingProxy
from tests.support.token_issuer import TokenIssuer

Seeded = tuple[RegistryServer, Corpus]
SKOPEO_TIMEOUT = 60.0
MIB = 1 << 20


def dest_config(
    tmp_path: Path,
    upstream: RegistryServer,
    dest_url: str,
    *,
    dest: dict[str, Any] | None = None,
    credentials: dict[str, dict[str, str]] | None = None,
    content: list[dict[str, Any]] | None = None,
    settings: dict[str, Any] | None = None,
) -> Path:
    entry: dict[str, Any] = {"urls": [upstream.url]}
    if content is not None:
        entry["content"] = content
    return write_sync_config(
        tmp_path,
        tmp_path / "unused-root",
        [entry],
        settings={"destination": {"url": dest_url, **(dest or {})}, **(settings or {})},
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
    problems = validate(config)
    assert any(p.startswith("syncworker.destination.url:") for p in problems), problems
    assert any(p.startswith("syncworker.destination.tlsVerify:") for p in problems), problems
    assert any(p.startswith("syncworker.destination.certDirr:") for p in problems), problems


def test_killed_mid_push_leaves_no_tag_and_the_next_run_finishes(
    registry: RegistryServer, make_registry: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    """SIGKILL ``syncworker sync`` while a large layer is half uploaded to the destination:
    no tag there points at the incomplete tree; the next run completes it."""
    repo = "dest/crash"
    big = make_layer("dest-crash-big", size=16 * MIB, compresslevel=0)
    image = make_image("dest-crash", base=[big])
    push_image(registry.url, repo, "v1", image)
    dest = make_registry()
    with StallingProxy(registry.url, big.digest, after=4 * MIB) as proxy:
        config = dest_config(tmp_path, registry, dest.url, content=[{"prefix": repo}])
        config.write_text(config.read_text().replace(registry.url, proxy.url))
        code = "import sys; from syncworker.cli import main; sys.exit(main())"
        with (tmp_path / "first-run.log").open("wb") as log:
            child = subprocess.Popen(
                [sys.executable, "-c", code, "sync", "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        uploads = dest.storage_dir / f"docker/registry/v2/repositories/{repo}/_uploads"
        try:
            reached = wait_until(
                lambda: any(p.stat().st_size >= MIB for p in uploads.glob("*/data")),
                timeout=120,
                alive=lambda: child.poll() is None,
            )
            assert reached, (tmp_path / "first-run.log").read_text()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        tags = requests.get(f"{dest.url}/v2/{repo}/tags/list", timeout=30)
        assert tags.status_code == 404 or "v1" not in (tags.json()["tags"] or []), tags.text
        proxy.release()
        run = run_sync(config)
    assert run.code == 0, run.output
    assert skopeo_digest(dest.url, repo, "v1") == image.digest


def test_bearer_tokens_carry_push_and_the_mount_source_pull(
    registry: RegistryServer,
    make_registry: Callable[..., RegistryServer],
    make_token_issuer: Callable[..., TokenIssuer],
    tmp_path: Path,
) -> None:
    base = make_layer("dest-bearer-base")
    for repo in ("dest-bearer/a", "dest-bearer/b"):
        push_image(registry.url, repo, "v1", make_image(repo, base=[base]))
    issuer = make_token_issuer(users={"pusher": "t0ken-pw"}, anonymous_pull=False)
    dest = make_registry(token_auth=issuer)
    config = dest_config(
        tmp_path,
        registry,
        dest.url,
        credentials={dest.host: {"username": "pusher", "password": "t0ken-pw"}},
        content=[{"prefix": "dest-bearer/*"}],
        settings={"concurrency": 1},
    )
    spent = counters(dest)
    run = run_sync(config)
    assert run.code == 0, run.output
    assert "t0ken-pw" not in run.output
    # The base layer went up once; the second repository mounted it from the first.
    assert spent()[("blob_upload", "post", "201")] == 1
    assert "repository:dest-bearer/b:pull,push" in issuer.scopes_requested
    assert "repository:dest-bearer/a:pull" in issuer.scopes_requested


def test_a_pull_only_login_fails_the_repository_naming_the_destination(
    registry: RegistryServer,
    make_registry: Callable[..., RegistryServer],
    make_token_issuer: Callable[..., TokenIssuer],
    tmp_path: Path,
) -> None:
    repo = "dest-bearer/denied"
    push_image(registry.url, repo, "v1", make_image(repo))
    issuer = make_token_issuer(
        users={"reader": "r3ad-pw"}, anonymous_pull=False, users_pull_only=frozenset({"reader"})
    )
    dest = make_registry(token_auth=issuer)
    config = dest_config(
        tmp_path,
        registry,
        dest.url,
        credentials={dest.host: {"username": "reader", "password": "r3ad-pw"}},
        content=[{"prefix": repo}],
    )
    run = run_sync(config)
    assert run.code == 1
    failed = [line for line in run.stdout.splitlines() if "FAILED" in line]
    assert failed and all(repo in line for line in failed), run.output
    assert any(f"destination {dest.host}" in line and "401" in line for line in failed), failed
    assert "r3ad-pw" not in run.output


def test_the_example_loads_with_its_destination() -> None:
    example = Path(__file__).resolve().parent.parent / "examples/mirror-to-registry.yaml"
    dest = load_config(example).syncworker.destination
    assert dest is not None
    assert (dest.url, dest.host, dest.tls_verify, dest.cert_dir) == (
        "https://registry.internal:5000",
        "registry.internal:5000",
        True,
        "/etc/syncworker/certs/dest",
    )


def test_on_demand_image_reads_only_its_own_tags_on_the_destination(
    registry: RegistryServer, make_registry: Callable[..., RegistryServer], tmp_path: Path
) -> None:
    """sync_image asks the destination about its tag and that tag's special tags, never
    for the repository's whole tag list."""
    repo = "dest/on-demand"
    images = {f"v{i}": make_image(f"{repo}-{i}") for i in range(6)}
    for tag, image in images.items():
        push_image(registry.url, repo, tag, image)
    dest = make_registry()
    path = dest_config(tmp_path, registry, dest.url, content=[{"prefix": repo}])
    assert run_sync(path).code == 0
    config = load_config(path)
    spent = counters(dest)
    with build_mirror(config, store_for(config), LocalLocks()) as mirror:
        unchanged = mirror.sync_image(registry.host, repo, "v3")
    assert (unchanged.failures, unchanged.skipped, unchanged.copied) == ([], ["v3"], [])
    # v3 itself, then its tag-schema and .sig/.att/.sbom tags (absent): five GETs, no tag
    # list.
    assert spent() == {("manifest", "get", "200"): 1, ("manifest", "get", "404"): 4}

    deleted = requests.delete(f"{dest.url}/v2/{repo}/manifests/{images['v3'].digest}", timeout=30)
    assert deleted.status_code == 202
    with build_mirror(config, store_for(config), LocalLocks()) as mirror:
        repaired = mirror.sync_image(registry.host, repo, "v3")
    assert (repaired.failures, repaired.copied) == ([], ["v3"])
    assert skopeo_digest(dest.url, repo, "v3") == images["v3"].digest


def test_no_pooled_connection_is_discarded_when_every_thread_pushes(
    make_registry: Callable[..., RegistryServer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """More blob threads than urllib3's default pool of connections push at once: the
    destination's pool is sized to the threads sharing it, so none of their connections
    is dropped on return ("Connection pool is full")."""
    upstream, dest = make_registry(), make_registry()
    for index in range(3):
        push_image(upstream.url, f"pool/r{index}", "v1", make_image(("pool", index), layers=24))
    settings = {"concurrency": 3, "blobConcurrency": 16, "tagConcurrency": 1}
    caplog.set_level(logging.WARNING, logger="urllib3")
    run = run_sync(dest_config(tmp_path, upstream, dest.url, settings=settings))
    assert run.code == 0, run.output
    assert "pool is full" not in caplog.text + run.stderr
    store = store_for(load_config(dest_config(tmp_path, upstream, dest.url, settings=settings)))
    assert store.destination.options.pool_size >= 3 * 16 + 3  # type: ignore[attr-defined]
