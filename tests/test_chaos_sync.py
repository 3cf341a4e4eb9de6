"""Chaos, one process: ``syncworker sync`` through a proxy that injects faults.

The upstream is a real registry (standard corpus plus a uniform one) behind
tests/support/fault_proxy.py; the store is checked with tests/support/chaos.py. Figures
(faults by kind, requests, blob GETs against unique blobs) are printed as ``[chaos]`` lines.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.chaos import report, verified_tags
from tests.support.corpus import seed_many, seed_standard
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.mirror import SKOPEO_READABLE, run_sync, temporaries, write_sync_config
from tests.support.registry_server import RegistryServer

# One xdist worker runs this module's tests (scripts/test.sh: --dist loadgroup), so its
# module-scoped seeded upstream starts once, not once per worker.
pytestmark = [pytest.mark.chaos, pytest.mark.xdist_group("test_chaos_sync")]

Tags = dict[str, dict[str, str]]
SEED = 20261130
# zot's keys: each request is tried up to 6 times, backing off from 50 ms. At 30% faults a
# request fails 6 times in a row with probability 0.3**6 (0.07%).
RETRY = {"maxRetries": 5, "retryDelay": "50ms"}
# "Nearly every tag": what a 0.07% per-request failure leaves of about 130 tags.
COMPLETE_SHARE = 0.95
# The mix at 30%: everything but flipped bytes, which have tests of their own.
TRANSIENT = tuple(f for f in Fault if f is not Fault.FLIP)
BLOB_PATHS = r"/blobs/sha256:"
MANIFEST_PATHS = r"/manifests/"
FLIPS = [Fault.FLIP]


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RegistryServer, Tags, set[str]]]:
    """A registry with the standard corpus and 20 repositories x 4 tags (every third one a
    two-platform index); its tags and its unique fetchable blobs."""
    server = RegistryServer()
    try:
        standard = seed_standard(server)
        uniform = seed_many(server, repos=20, tags=4, layers=2, shared_layers=3, index_every=3)
        tags = {**standard.tags, **uniform.tags}
        foreign = standard["foreign"].manifest.json["layers"][0]["digest"]
        blobs = set().union(*standard.blobs.values(), *uniform.blobs.values()) - {foreign}
        yield server, tags, blobs
    finally:
        server.stop()


def tag_count(tags: Tags) -> int:
    return sum(len(t) for t in tags.values())


def test_sync_through_30_percent_faults_then_a_clean_run_completes(
    upstream: tuple[RegistryServer, Tags, set[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, tags, blobs = upstream
    root = tmp_path / "store"
    with FaultProxy(server.url, rate=0.3, faults=TRANSIENT, seed=SEED, stall_seconds=0.5) as proxy:
        config = _config(tmp_path, root, proxy.url)
        gets, started = server.blob_gets(), time.monotonic()
        first = run_sync(config)
        first_gets, first_seconds = server.blob_gets() - gets, time.monotonic() - started
        faults, requests = proxy.injected(), proxy.requests

        # Whatever failed, nothing corrupt or half-published is reachable, no temporary is
        # left behind, and nearly every tag is complete.
        complete = verified_tags(root, tags, skopeo=False)
        assert temporaries(root) == []
        assert complete >= COMPLETE_SHARE * tag_count(tags), first.output[-3000:]
        assert set(faults) == {str(f) for f in TRANSIENT}, faults  # every kind was injected

        proxy.rate = 0.0
        gets = server.blob_gets()
        second = run_sync(config)
        assert second.code == 0, second.output[-3000:]
        second_gets = server.blob_gets() - gets
    assert verified_tags(root, tags) == tag_count(tags)
    report(
        capsys,
        "sync at 30% faults",
        requests=requests,
        faults=faults,
        first_exit=first.code,
        tags_complete=f"{complete}/{tag_count(tags)}",
        blob_gets=f"{first_gets}+{second_gets} for {len(blobs)} unique",
        first_run_s=round(first_seconds, 1),
    )


def test_flipped_blob_bytes_never_reach_the_store_and_are_fetched_again(
    upstream: tuple[RegistryServer, Tags, set[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, tags, blobs = upstream
    root = tmp_path / "store"
    # 10%: with each blob fetched up to 6 times, one fails for good with p = 1e-6.
    with FaultProxy(server.url, rate=0.1, faults=FLIPS, seed=SEED, paths=BLOB_PATHS) as proxy:
        gets = server.blob_gets()
        run = run_sync(_config(tmp_path, root, proxy.url))
        fetched, flips = server.blob_gets() - gets, proxy.injected().get(Fault.FLIP, 0)
    assert run.code == 0, run.output[-3000:]
    assert flips > 0
    # Each altered body is refused (digest mismatch), never published, and fetched again.
    assert verified_tags(root, tags) == tag_count(tags)
    assert temporaries(root) == []
    assert fetched == len(blobs) + flips
    report(capsys, "flipped blob bytes at 10%", flips=flips, exit=run.code,
           tags_complete=f"{tag_count(tags)}/{tag_count(tags)}",
           blob_gets=f"{fetched} for {len(blobs)} unique")  # fmt: skip


def test_flipped_manifest_bytes_are_fetched_again(
    upstream: tuple[RegistryServer, Tags, set[str]], tmp_path: Path
) -> None:
    server, tags, _ = upstream
    root = tmp_path / "store"
    with FaultProxy(server.url, rate=0.1, faults=FLIPS, seed=SEED, paths=MANIFEST_PATHS) as proxy:
        run = run_sync(_config(tmp_path, root, proxy.url))
        assert proxy.injected().get(Fault.FLIP, 0) > 0
    verified_tags(root, tags, skopeo=False)  # whatever failed, nothing altered is kept
    assert run.code == 0, run.output[-3000:]


def _config(directory: Path, root: Path, url: str) -> Path:
    """Mirror ``url`` into ``root`` with zot's retries, in layouts skopeo 1.9 reads whole."""
    return write_sync_config(directory, root, [{"urls": [url], **RETRY}], settings=SKOPEO_READABLE)
