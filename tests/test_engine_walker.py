"""A dry run and a real run are one walk into two sinks, so they agree: what
``Mirror.plan_repo`` says it would copy, skip, fetch and refuse is exactly what
``Mirror.sync_repo`` then copies, skips, fetches and refuses. On the standard corpus (with
``platforms``, with ``onlySigned``, and with its referrers: a signature on an SBOM on an
image), on a deeper chain of referrers, and at the depth limit of nested indexes. The
check, walking the stored trees the same way, finds them whole."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from syncworker.engine import LocalLocks, Mirror, RepoResult, Upstream
from syncworker.engine.dryrun import RepoPlan
from syncworker.engine.images import MAX_DEPTH
from syncworker.engine.repo import DEFAULT_TAG_CONCURRENCY
from syncworker.engine.treecheck import TreeChecker
from syncworker.filters import ContentRule, ContentRules
from syncworker.oci import Descriptor, Digest, Platform
from syncworker.registry import ClientOptions
from syncworker.store import IndexEntry
from syncworker.store.fs import FsStore
from tests.support.corpus import Corpus
from tests.support.images import (
    OCI_INDEX,
    Manifest,
    canonical_json,
    make_artifact,
    make_image,
)
from tests.support.mirror import check_store
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer

NAME = "upstream"
FAST = ClientOptions(max_retries=1, retry_delay=0.01)
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"


def _mirror(server: RegistryServer, store: FsStore, **extra: object) -> Mirror:
    rules = ContentRules([ContentRule("**")])
    upstream = Upstream(NAME, (server.url,), None, FAST, rules, **extra)  # type: ignore[arg-type]
    return Mirror({NAME: upstream}, store, LocalLocks(), blob_threads=4)


def _outcome(result: RepoResult) -> dict[str, object]:
    """What a run did, in an order that does not depend on its threads."""
    return {
        "copied": sorted(result.copied),
        "skipped": sorted(result.skipped),
        "refused": sorted((f.tag or "", f.reason) for f in result.failures),
        "blobs_fetched": result.blobs_fetched,
        "bytes": result.bytes_copied,
    }


def _plan_then_sync(mirror: Mirror, repo: str) -> tuple[RepoResult, RepoResult]:
    plan = mirror.plan_repo(NAME, repo)
    assert isinstance(plan, RepoPlan)
    done = mirror.sync_repo(NAME, repo)
    assert _outcome(plan) == _outcome(done), repo
    assert plan.fetch_bytes == {name: plan.fetch_bytes[name] for name in done.copied}
    return plan, done


@pytest.fixture
def store(tmp_path: Path) -> FsStore:
    return FsStore(tmp_path / "store")


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({}, id="everything"),
        pytest.param({"platforms": (Platform.parse("linux/arm64/v8"),)}, id="platforms"),
        pytest.param({"only_signed": True}, id="onlySigned"),
    ],
)
def test_dry_run_plans_what_the_real_run_copies_on_the_standard_corpus(
    seeded_registry: tuple[RegistryServer, Corpus],
    store: FsStore,
    tmp_path: Path,
    settings: dict[str, object],
) -> None:
    server, corpus = seeded_registry
    copied: list[str] = []
    with _mirror(server, store, **settings) as mirror:
        for repo in corpus.repositories:
            plan, done = _plan_then_sync(mirror, repo)
            assert done.ok, done.failures
            copied += [f"{repo}:{name}" for name in done.copied]
            # Once copied, a plan has nothing left to copy.
            again = mirror.plan_repo(NAME, repo)
            assert again.copied == [] and sorted(again.skipped) == sorted(
                done.skipped + plan.copied
            )
    alpine, signed = "library/alpine", corpus["alpine_3.19"].manifest.digest
    sbom = corpus["sbom"].manifest.digest
    # The referrers of 3.19, and the signature of its SBOM (eligible only once the SBOM
    # is in), are planned and copied in every setting.
    referrer_tags = {f"sha256-{signed.split(':')[1]}", f"sha256-{sbom.split(':')[1]}"}
    assert {f"{alpine}:{tag}" for tag in referrer_tags} <= set(copied)
    if settings.get("only_signed"):
        assert [c for c in copied if not c.startswith(f"{alpine}:sha256-")] == [f"{alpine}:3.19"]
    kept: tuple[Platform, ...] = settings.get("platforms", ())  # type: ignore[assignment]
    check_store(Path(store.root), [f"{p.os}/{p.architecture}" for p in kept])
    # The check walks what the sync stored with the same walk, so it expects exactly that.
    with ThreadPoolExecutor(2) as pool:
        checker = TreeChecker(store, lambda repo: kept, pool, deep=True)
        found = [checker.check_repo(repo) for repo in store.repositories()]
    assert found and all(c.ok and c.trees for c in found), found


def _chain(base: Manifest, length: int) -> list[Manifest]:
    """``length`` signatures, each on the one before, the first on ``base``."""
    chain, subject = [], base
    for level in range(length):
        subject = make_artifact(subject, artifact_type=SIGNATURE, payload=b"sig %d" % level)
        chain.append(subject)
    return chain


def test_dry_run_plans_a_deep_chain_of_referrers(registry: RegistryServer, store: FsStore) -> None:
    repo = "walker/chain"
    image = make_image(("walker", "chain"))
    push_image(registry.url, repo, "v1", image)
    for link in _chain(image, 5):
        push_image(registry.url, repo, None, link)
    with _mirror(registry, store) as mirror:
        plan, done = _plan_then_sync(mirror, repo)
    assert done.ok, done.failures
    assert len(done.copied) == 1 + 5  # the tag, and the referrers tag of each level


def nested(leaf: Manifest, levels: int) -> Manifest:
    """``leaf`` under ``levels`` indexes of one child each."""
    top = leaf
    for _ in range(levels):
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top.descriptor()]}
        top = Manifest(canonical_json(body), OCI_INDEX, children=(top,))
    return top


def test_dry_run_and_real_run_refuse_the_same_nesting_depth(
    registry: RegistryServer, store: FsStore
) -> None:
    """The deepest manifest of a tree may have ``MAX_DEPTH - 1`` manifests above it; one
    level more is refused, by the plan as by the copy."""
    repo = "walker/nested"
    push_image(registry.url, repo, "deepest", nested(make_image(("walker", 1)), MAX_DEPTH - 1))
    push_image(registry.url, repo, "too-deep", nested(make_image(("walker", 2)), MAX_DEPTH))
    with _mirror(registry, store) as mirror:
        plan, done = _plan_then_sync(mirror, repo)
    assert plan.copied == ["deepest"]
    assert [f.tag for f in plan.failures] == ["too-deep"]
    assert f"nested more than {MAX_DEPTH} deep" in plan.failures[0].reason
    check_store(Path(store.root))


def _store_tree(store: FsStore, repo: str, tag: str, top: Manifest) -> None:
    """``top`` written into ``store`` as a layout holds it, children first, then listed."""
    for manifest in top.walk():
        for blob in manifest.blobs:
            store.put_blob(repo, Digest.parse(blob.digest), blob.size, [blob.data])
        store.put_manifest(repo, Digest.parse(manifest.digest), manifest.raw)
    desc = Descriptor(top.media_type, Digest.parse(top.digest), top.size)
    store.update_index(repo, [IndexEntry(desc, tag)])


def test_the_check_refuses_the_nesting_depth_the_sync_refuses(store: FsStore) -> None:
    """A tree nested one level deeper than a sync stores (written by hand) is reported
    as not checkable, naming the depth, never as whole."""
    deepest = nested(make_image(("walker", "check", 1)), MAX_DEPTH - 1)
    too_deep = nested(make_image(("walker", "check", 2)), MAX_DEPTH)
    _store_tree(store, "walker/ok", "deepest", deepest)
    _store_tree(store, "walker/deep", "too-deep", too_deep)
    with ThreadPoolExecutor(2) as pool:
        checker = TreeChecker(store, lambda repo: (), pool)
        assert checker.check_repo("walker/ok").ok
        found = checker.check_repo("walker/deep")
    assert not found.ok
    assert found.error is not None and f"nested more than {MAX_DEPTH} deep" in found.error


def test_one_tag_concurrency_default_for_the_engine_and_the_config() -> None:
    from syncworker.config.model import SyncworkerSettings

    assert SyncworkerSettings().tag_concurrency == DEFAULT_TAG_CONCURRENCY
