"""The engine alone: ``Mirror`` (and the ``RepoJob`` behind it) and ``TreeWalker`` against
a real registry, with in-process locks and a filesystem store. No Redis, no config file:
the engine is built from plain values, as the config layer builds it."""

from __future__ import annotations

import hashlib
import subprocess
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from syncworker.engine import LocalLocks, Mirror, Upstream, run_registries
from syncworker.engine.blobcopy import BlobCopier
from syncworker.engine.events import NullEvents
from syncworker.engine.images import TreeWalker
from syncworker.engine.sinks import CopySink
from syncworker.errors import ConfigError, LockBusy, StoreError
from syncworker.filters import ContentRule, ContentRules
from syncworker.oci import Digest, Platform
from syncworker.registry import ClientOptions, Deadline, RegistryClient
from syncworker.store import IndexEntry
from syncworker.store.fs import FsStore
from tests.support.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    cosign_signature_tag,
    make_artifact,
    make_cosign_signature,
    make_image,
    make_index,
    referrers_tag,
)
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer

NAME = "upstream"
FAST = ClientOptions(max_retries=1, retry_delay=0.01)
SBOM = "application/spdx+json"


def _upstream(server: RegistryServer, **extra: object) -> Upstream:
    rules = ContentRules([ContentRule("engine/**")])
    return Upstream(NAME, (server.url,), None, FAST, rules, **extra)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> FsStore:
    return FsStore(tmp_path / "store")


@pytest.fixture
def mirror(registry: RegistryServer, store: FsStore) -> Iterator[Mirror]:
    with Mirror({NAME: _upstream(registry)}, store, LocalLocks(), blob_threads=4) as made:
        yield made


def _tags(store: FsStore, repo: str) -> dict[str, str]:
    return {e.tag: str(e.descriptor.digest) for e in store.index(repo) if e.tag}


def test_sync_repo_copies_tags_and_signatures_then_only_heads(
    registry: RegistryServer, mirror: Mirror, store: FsStore
) -> None:
    repo = "engine/app"
    index, image = make_index("engine-app-v1"), make_image("engine-app-v2")
    signature = make_cosign_signature(image, reference=f"{registry.host}/{repo}:v2")
    push_image(registry.url, repo, "v1", index)
    push_image(registry.url, repo, "v2", image)
    push_image(registry.url, repo, cosign_signature_tag(image.digest), signature)
    unique = index.all_blob_digests() | image.all_blob_digests() | signature.all_blob_digests()

    gets_before = registry.blob_gets()
    first = mirror.sync_repo(NAME, repo)
    assert first.ok, first.failures
    assert sorted(first.copied) == sorted(["v1", "v2", cosign_signature_tag(image.digest)])
    assert first.blobs_fetched == len(unique) == registry.blob_gets() - gets_before
    assert _tags(store, repo) == {
        "v1": index.digest,
        "v2": image.digest,
        cosign_signature_tag(image.digest): signature.digest,
    }

    manifest_gets = registry.request_count(handler="manifest", method="get")
    second = mirror.sync_repo(NAME, repo)
    assert second.ok and second.copied == [] and len(second.skipped) == 3
    assert registry.request_count(handler="manifest", method="get") == manifest_gets
    assert registry.blob_gets() - gets_before == len(unique)


def test_sync_image_by_tag_and_by_digest(mirror: Mirror, registry: RegistryServer) -> None:
    repo = "engine/ondemand"
    tagged, untagged = make_image("engine-od-tag"), make_image("engine-od-digest")
    push_image(registry.url, repo, "v1", tagged)
    push_image(registry.url, repo, None, untagged)
    assert mirror.sync_image(NAME, repo, "v1").copied == ["v1"]
    by_digest = mirror.sync_image(NAME, repo, untagged.digest)
    assert by_digest.copied == [untagged.digest]
    assert mirror.store.has_blob(repo, Digest.parse(untagged.digest))
    assert mirror.sync_image(NAME, repo, untagged.digest).skipped == [untagged.digest]


def test_sync_image_keeps_the_special_tags_a_repository_sync_keeps(
    registry: RegistryServer, mirror: Mirror, store: FsStore, tmp_path: Path
) -> None:
    """On an upstream without the referrers API (distribution 2.8) an image's referrers
    are listed under its tag-schema tag, its cosign signature under ``.sig``: an on-demand
    copy holds both tags, as a sync of the whole repository does, and a referrer attached
    upstream later arrives with the next on-demand copy."""
    repo = "engine/special"
    image = make_image("engine-special")
    signature = make_cosign_signature(image, reference=f"{registry.host}/{repo}:v1")
    push_image(registry.url, repo, "v1", image)
    push_image(registry.url, repo, cosign_signature_tag(image.digest), signature)
    push_image(registry.url, repo, None, make_artifact(image, artifact_type=SBOM, payload=b"1"))
    assert mirror.sync_image(NAME, repo, "v1").ok
    whole = FsStore(tmp_path / "whole")
    with Mirror({NAME: _upstream(registry)}, whole, LocalLocks(), blob_threads=2) as other:
        assert other.sync_repo(NAME, repo).ok
    assert _entries(store, repo) == _entries(whole, repo)
    tag_schema = referrers_tag(image.digest)
    assert set(_tags(store, repo)) == {"v1", cosign_signature_tag(image.digest), tag_schema}

    later = make_artifact(image, artifact_type=SBOM, payload=b"2")
    push_image(registry.url, repo, None, later)
    again = mirror.sync_image(NAME, repo, "v1")
    assert again.copied == [tag_schema], again.failures
    assert (None, later.digest) in _entries(store, repo)
    for tag in (tag_schema, cosign_signature_tag(image.digest)):  # as skopeo reads them
        assert _skopeo_raw_digest(tmp_path / "store" / repo, tag) == _upstream_digest(
            registry, repo, tag
        )


def _entries(store: FsStore, repo: str) -> set[tuple[str | None, str]]:
    return {(e.tag, str(e.descriptor.digest)) for e in store.index(repo)}


def _skopeo_raw_digest(layout: Path, tag: str) -> str:
    done = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{layout}:{tag}"],
                          capture_output=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    return "sha256:" + hashlib.sha256(done.stdout).hexdigest()


def _upstream_digest(registry: RegistryServer, repo: str, tag: str) -> str:
    accept = ", ".join((OCI_INDEX, OCI_MANIFEST))
    url = f"{registry.url}/v2/{repo}/manifests/{tag}"
    answer = requests.head(url, headers={"Accept": accept}, timeout=30)
    assert answer.status_code == 200, answer.status_code
    return answer.headers["Docker-Content-Digest"]


def test_a_single_name_on_docker_hub_is_asked_and_stored_as_library(
    registry: RegistryServer, store: FsStore
) -> None:
    """Docker Hub's ``alpine`` is ``library/alpine``, as docker spells it: asked upstream
    and stored so, where a scheduled sync of the same image puts it."""
    image = make_image("engine-hub-single")
    push_image(registry.url, "library/enginehub", "3.20", image)
    hub = replace(_upstream(registry), rules=ContentRules([ContentRule("**")]), docker_hub=True)
    with Mirror({NAME: hub}, store, LocalLocks(), blob_threads=4) as mirror:
        result = mirror.sync_image(NAME, "enginehub", "3.20")
    assert result.ok and result.copied == ["3.20"], result.failures
    assert result.upstream_repo == "library/enginehub"
    assert _tags(store, "library/enginehub") == {"3.20": image.digest}
    assert store.repositories() == ["library/enginehub"]


def test_repository_outside_the_rules_and_unknown_registry(mirror: Mirror) -> None:
    refused = mirror.sync_repo(NAME, "elsewhere/app")
    assert not refused.ok and "no content rule" in refused.failures[0].reason
    # A worker's config is the one it started with: the error says so, and what it has.
    started_with = rf"no registry named 'nope' in the config .* \(its registries: {NAME}\)"
    with pytest.raises(ConfigError, match=started_with):
        mirror.sync_repo("nope", "engine/app")


class _EndsThread(NullEvents):
    """Events that end one repository's thread with an exception outside ``Exception``."""

    def __init__(self, repo: str, exc: BaseException) -> None:
        self.repo, self.exc = repo, exc

    def repo_started(self, registry: str, repo: str) -> None:
        if repo == self.repo:
            raise self.exc


@pytest.mark.parametrize(
    "exc", [SystemExit(3), GeneratorExit("closed"), KeyboardInterrupt()], ids=type
)
def test_a_repository_whose_thread_ends_outside_exception_is_counted_failed(
    registry: RegistryServer, store: FsStore, exc: BaseException
) -> None:
    repos = ["engine/end-a", "engine/end-b", "engine/end-c"]
    for repo in repos:
        push_image(registry.url, repo, "v1", make_image(f"{repo}-v1"))
    upstream = replace(_upstream(registry), repos=tuple(repos))
    events = _EndsThread("engine/end-b", exc)
    with Mirror({NAME: upstream}, store, LocalLocks(), events=events) as mirror:
        summary = run_registries(mirror, [NAME], concurrency=len(repos))
    assert (summary.repos, summary.repos_failed, summary.copied) == (3, 1, 2)
    [failure] = summary.failures
    assert failure.upstream_repo == "engine/end-b"
    assert failure.reason.startswith(type(exc).__name__), failure.reason


def test_sync_repo_gives_up_when_the_repository_stays_locked(
    registry: RegistryServer, store: FsStore
) -> None:
    locks = LocalLocks()
    with Mirror({NAME: _upstream(registry)}, store, locks) as mirror:
        held = threading.Event()
        done = threading.Event()

        def holder() -> None:
            with locks.repo_lock("engine/busy"):
                held.set()
                done.wait(60)

        thread = threading.Thread(target=holder)
        thread.start()
        try:
            assert held.wait(60)
            with pytest.raises(LockBusy):
                mirror.sync_repo(NAME, "engine/busy", lock_wait=0)
        finally:
            done.set()
            thread.join(60)


class IndexRefusingStore(FsStore):
    """A filesystem store whose index.json cannot be replaced (a full or read-only disk)."""

    def update_index(self, repo: str, entries: Sequence[IndexEntry]) -> bool:
        raise StoreError(f"{repo}/index.json: no space left on device")


def test_a_tag_whose_index_entry_is_not_written_fails_and_is_not_counted_copied(
    registry: RegistryServer, tmp_path: Path
) -> None:
    repo = "engine/unlisted"
    image = make_image("engine-unlisted")
    signature = make_cosign_signature(image, reference=f"{registry.host}/{repo}:v1")
    push_image(registry.url, repo, "v1", image)
    push_image(registry.url, repo, cosign_signature_tag(image.digest), signature)
    root = tmp_path / "store"
    with Mirror({NAME: _upstream(registry)}, IndexRefusingStore(root), LocalLocks()) as broken:
        result = broken.sync_repo(NAME, repo)
    assert result.copied == []
    failed = {f.tag: f.reason for f in result.failures}
    assert set(failed) == {"v1", cosign_signature_tag(image.digest)}
    assert all("no space left on device" in reason for reason in failed.values())

    # The trees are stored: a later run lists them without fetching a blob again.
    gets = registry.blob_gets()
    with Mirror({NAME: _upstream(registry)}, FsStore(root), LocalLocks()) as healthy:
        again = healthy.sync_repo(NAME, repo)
    assert again.ok and sorted(again.copied) == sorted(failed)
    assert registry.blob_gets() == gets


def test_configured_repos_are_listed_in_pages_instead_of_the_catalog(
    registry: RegistryServer, store: FsStore
) -> None:
    repos = ("engine/c", "engine/a", "engine/b")
    upstream = _upstream(registry, repos=tuple(sorted(repos)))
    with Mirror({NAME: upstream}, store, LocalLocks()) as mirror:
        catalog_before = registry.request_count(handler="catalog")
        assert mirror.list_page(NAME, None, 2) == (["engine/a", "engine/b"], "engine/b")
        assert mirror.list_page(NAME, "engine/b", 2) == (["engine/c"], None)
        assert registry.request_count(handler="catalog") == catalog_before


def test_image_copier_keeps_wanted_platforms_and_fetches_shared_blobs_once(
    registry: RegistryServer, store: FsStore
) -> None:
    """Two repositories copied at once, with the same layers: the blob single-flight (here
    in-process) lets one copy fetch each blob while the other links it."""
    index = make_index("engine-shared")
    repos = ["engine/shared-a", "engine/shared-b"]
    for repo in repos:
        push_image(registry.url, repo, "v1", index)
    arm64 = next(c for c in index.children if c.platform and c.platform["architecture"] == "arm64")
    client = RegistryClient((registry.url,), None, FAST)
    with ThreadPoolExecutor(8) as pool:
        blobs = BlobCopier(store, LocalLocks())
        platforms = [Platform.parse("linux/arm64/v8")]
        sinks = [CopySink(client, r, store, blobs, pool, Deadline.unbounded()) for r in repos]
        copiers = [TreeWalker(sink, platforms) for sink in sinks]
        gets_before = registry.blob_gets()
        descs = [client.head_manifest(repo, "v1") for repo in repos]
        with ThreadPoolExecutor(2) as callers:
            trees = list(callers.map(lambda c, r, d: c.walk(r, d), copiers, repos, descs))
    assert registry.blob_gets() - gets_before == len(arm64.all_blob_digests())
    assert sum(t.stats.fetched for t in trees) == len(arm64.all_blob_digests())
    assert sum(t.stats.linked for t in trees) == len(arm64.all_blob_digests())
    for repo in repos:
        assert store.has_blob(repo, Digest.parse(index.digest))
        for child in index.children:
            assert store.has_blob(repo, Digest.parse(child.digest)) == (child is arm64)


class LookupCountingStore(FsStore):
    """Counts manifest lookups and index.json writes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.lookups = self.index_writes = 0

    def has_manifest(self, repo: str, digest: Digest) -> bool:
        self.lookups += 1
        return super().has_manifest(repo, digest)

    def update_index(self, repo: str, entries: Sequence[IndexEntry]) -> bool:
        written = super().update_index(repo, entries)
        self.index_writes += written
        return written


def test_widened_platforms_complete_an_unchanged_index_once_then_cost_no_lookup(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """The run after ``platforms`` is widened looks the index's children up and fetches the
    new one; the entry then records the setting, so later no-op runs look nothing up."""
    repo, index = "engine/widened", make_index("engine-widened", layers=1)
    push_image(registry.url, repo, "multi", index)
    store = LookupCountingStore(tmp_path / "store")
    amd64 = index.children[0].digest

    narrow = _upstream(registry, platforms=(Platform.parse("linux/arm64"),))
    with Mirror({NAME: narrow}, store, LocalLocks()) as mirror:
        assert mirror.sync_repo(NAME, repo).ok
    assert not store.has_blob(repo, Digest.parse(amd64))
    store.lookups = store.index_writes = 0
    with Mirror({NAME: _upstream(registry)}, store, LocalLocks()) as mirror:
        widened = mirror.sync_repo(NAME, repo)
    assert widened.copied == ["multi"] and store.has_blob(repo, Digest.parse(amd64))
    assert store.index_writes == 1
    store.lookups = store.index_writes = 0
    with Mirror({NAME: _upstream(registry)}, store, LocalLocks()) as mirror:
        assert mirror.sync_repo(NAME, repo).skipped == ["multi"]
    assert (store.lookups, store.index_writes) == (0, 0)
