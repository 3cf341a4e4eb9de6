"""One source per destination repository: the claim each store records (filesystem, S3 on
moto, a real registry), `syncworker sync` from two configs or two processes at once into one
destination, what `validate` refuses from the config alone. The Celery workers, the API and
webhooks are in tests/test_claims_cluster.py."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from syncworker.engine.claims import give_back, take_claim
from syncworker.engine.results import RepoResult
from syncworker.errors import ClaimError, LockLost, StoreError
from syncworker.store import Source, Store
from syncworker.store.claim import CLAIM_FILE
from syncworker.store.registry import Destination, RegistryStore
from tests.support.cluster import ROOT, SYNCWORKER
from tests.support.corpus import Corpus
from tests.support.mirror import layout_tags, run_sync, write_sync_config
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.test_store_contract import (
    Backend,
    backend,
    layouts_only,
    s3_server,
    s3rver_server,
)

__all__ = ["backend", "s3_server", "s3rver_server"]  # fixtures, imported for pytest

Seeded = tuple[RegistryServer, Corpus]
A = Source("hub", "library/alpine")
B = Source("hub", "library/busybox")


# -- the store's record ----------------------------------------------------------------------


def test_the_first_source_holds_a_repository_for_every_later_one(backend: Backend) -> None:
    store = backend.store
    assert store.claimant("same") is None
    assert store.claim("same", A) == A
    assert store.claim("same", A) == A  # again: held already
    assert store.claim("same", B) == A
    other = backend.reopen()  # another process, with nothing in memory
    assert other.claimant("same") == A
    assert other.claim("same", B) == A
    assert store.claim("elsewhere", B) == B


# s3rver is left out of both races: it has no conditional PutObject, so there the repository
# lock, not the claim's write, orders first claims (claim.py), and these races take no lock.
# It also writes an object in place, so a GET racing a PUT of the same key is cut short.
@pytest.mark.parametrize("backend", ["fs", "s3", "registry"], indirect=True)
def test_of_racing_first_claims_through_one_store_exactly_one_wins(backend: Backend) -> None:
    """Six threads of one process claim a new repository at once."""
    _race_six(backend, [backend.store] * 6)


@pytest.mark.parametrize("backend", ["fs", "s3", "registry"], indirect=True)
def test_of_racing_first_claims_from_separate_processes_exactly_one_wins(
    backend: Backend,
) -> None:
    """Six writers, each with a store of its own (as six processes would)."""
    _race_six(backend, [backend.reopen() for _ in range(6)])


def _race_six(backend: Backend, stores: list[Store]) -> None:
    sources = [Source("hub", f"team/app{i}") for i in range(6)]
    won: list[Source] = []
    start = threading.Barrier(len(stores))

    def claim(store: Store, source: Source) -> None:
        start.wait()
        won.append(store.claim("raced", source))

    threads = [
        threading.Thread(target=claim, args=pair) for pair in zip(stores, sources, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 6 and len(set(won)) == 1
    assert backend.reopen().claimant("raced") == won[0]


@pytest.mark.parametrize("backend", ["registry"], indirect=True)
def test_a_registry_destination_keeps_its_claims_beside_it(backend: Backend) -> None:
    """In Redis, shared by every process using it; nothing is pushed to the registry."""
    store = backend.store
    assert store.claim("claimed", A) == A
    assert backend.reopen().claimant("claimed") == A
    assert store.repositories() == []
    assert (
        requests.get(f"{backend.root_directory}/v2/claimed/tags/list", timeout=30).status_code
        == 404
    )
    alone = RegistryStore(Destination(backend.root_directory))  # no Redis: this process only
    assert alone.claimant("claimed") is None
    assert alone.claim("claimed", B) == B and alone.claim("claimed", A) == B


def test_a_claim_is_withdrawn_only_by_the_source_holding_it(backend: Backend) -> None:
    store = backend.store
    assert store.claim("same", A) == A
    store.release_claim("same", B)  # not B's: kept
    assert backend.reopen().claimant("same") == A
    store.release_claim("same", A)
    assert backend.reopen().claimant("same") is None
    assert store.claim("same", B) == B
    store.release_claim("never", A)  # nothing to withdraw


class _Hold:
    """A repository lock as its holder sees it, lost or not."""

    def __init__(self, lost: bool) -> None:
        self.lost = lost

    def ensure(self) -> None:
        if self.lost:
            raise LockLost("syncworker:lock:same")


def test_a_claim_is_given_back_only_while_the_lock_holds(backend: Backend) -> None:
    """A sync that wrote nothing gives its claim back, unless its lock was lost meanwhile:
    another sync of the same source may have written there since, and holds it now."""
    store, nothing = backend.store, RepoResult("hub", "library/alpine", "same")
    assert take_claim(store, "same", A)
    give_back(store, "same", A, _Hold(lost=True), nothing)
    assert backend.reopen().claimant("same") == A
    give_back(store, "same", A, _Hold(lost=False), nothing)
    assert backend.reopen().claimant("same") is None


@layouts_only
def test_a_claim_edited_by_hand_is_refused_and_an_empty_one_taken_again(
    backend: Backend,
) -> None:
    backend.write_raw(f"bad/{CLAIM_FILE}", b"{not json")
    with pytest.raises(StoreError, match=r"bad/\.claim: not a claim"):
        backend.store.claim("bad", A)
    backend.write_raw(f"cut/{CLAIM_FILE}", b"")  # a power loss before it was durable
    assert backend.store.claim("cut", B) == B
    assert backend.reopen().claimant("cut") == B


# -- syncworker sync -------------------------------------------------------------------------


RIVALS = ("library/alpine", "library/busybox")


def rival_configs(
    directory: Path,
    root: Path,
    server: RegistryServer,
    *,
    prune: bool = True,
    settings: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """For each of RIVALS, a config of its own (valid alone) mapping it into ``same``."""
    configs = {}
    for repo in RIVALS:
        own = directory / repo.replace("/", "-")
        own.mkdir(parents=True, exist_ok=True)
        content = [{"prefix": repo, "destination": "same", "stripPrefix": True}]
        registry = {"name": "hub", "urls": [server.url], "content": content, "prune": prune}
        configs[repo] = write_sync_config(own, root, [registry], settings=settings)
    return configs


def alpine_synced_first(server: RegistryServer, tmp_path: Path) -> tuple[Path, Path, Path]:
    """The rivals' configs into one store, alpine's synced (it holds ``same``): (the store's
    root, alpine's config, busybox's)."""
    root = tmp_path / "store"
    alpine, busybox = rival_configs(tmp_path, root, server).values()
    assert run_sync(alpine).code == 0
    return root, alpine, busybox


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but the lock file, by path: what a refused sync must
    leave exactly as it was."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock" and ".tmp" not in p.parts
    }


def test_a_second_config_mirroring_into_the_same_destination_is_refused(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    root, alpine, busybox = alpine_synced_first(server, tmp_path)
    before = files_of(root)
    for _ in range(2):
        run = run_sync(busybox)
        assert run.code == 1
        assert (
            "hub/library/busybox: destination 'same' mirrors hub/library/alpine,"
            " not hub/library/busybox"
        ) in run.output
        assert files_of(root) == before  # with prune: true, nothing of alpine's removed
    assert layout_tags(root) == {"same": corpus.tags["library/alpine"]}
    assert run_sync(alpine).code == 0


def test_two_processes_claiming_one_destination_at_once_leave_one_source(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    root = tmp_path / "store"
    configs = rival_configs(tmp_path, root, server)
    procs = {
        repo: subprocess.Popen([*SYNCWORKER, "sync", "-q", "-c", str(config)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for repo, config in configs.items()
    }  # fmt: skip
    outcomes = {
        repo: (proc.wait(timeout=120), proc.communicate()[0]) for repo, proc in procs.items()
    }
    assert sorted(code for code, _ in outcomes.values()) == [0, 1], outcomes
    [winner] = [repo for repo, (code, _) in outcomes.items() if code == 0]
    [loser] = [repo for repo, (code, _) in outcomes.items() if code == 1]
    assert f"destination 'same' mirrors hub/{winner}, not hub/{loser}" in outcomes[loser][1]
    assert layout_tags(root) == {"same": corpus.tags[winner]}


@pytest.mark.parametrize("cause", ["unresolvable", "unauthorized"])
def test_a_first_sync_that_mirrored_nothing_leaves_the_destination_unclaimed(
    seeded_registry: Seeded,
    make_registry: Callable[..., RegistryServer],
    tmp_path: Path,
    cause: str,
) -> None:
    """A source whose first sync failed before anything was listed (its host mistyped, its
    login missing) holds nothing there: the source configured next (the fix) mirrors it."""
    server, corpus = seeded_registry
    root = tmp_path / "store"
    url = "http://no-such-host.invalid" if cause == "unresolvable" else ""
    if not url:
        url = make_registry(htpasswd=("user", "secret")).url
    content = [{"prefix": "library/alpine", "destination": "same", "stripPrefix": True}]
    wrong = {"name": "old", "urls": [url], "repos": ["library/alpine"], "content": content}
    failed = run_sync(write_sync_config(tmp_path, root, [wrong]))
    assert failed.code == 1
    assert not (root / "same" / CLAIM_FILE).exists()
    fixed = rival_configs(tmp_path / "fixed", root, server)["library/alpine"]
    assert run_sync(fixed).code == 0
    assert layout_tags(root) == {"same": corpus.tags["library/alpine"]}
    assert json.loads((root / "same" / CLAIM_FILE).read_bytes())["registry"] == "hub"


def test_a_store_written_before_claims_is_adopted_by_its_next_sync(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    server, corpus = seeded_registry
    root, alpine, busybox = alpine_synced_first(server, tmp_path)
    (root / "same" / CLAIM_FILE).unlink()  # as every repository was before claims
    again = run_sync(alpine)
    assert again.code == 0 and "0 images copied" in again.stdout
    assert json.loads((root / "same" / CLAIM_FILE).read_bytes()) == {
        "registry": "hub",
        "repository": "library/alpine",
    }
    assert run_sync(busybox).code == 1
    assert layout_tags(root) == {"same": corpus.tags["library/alpine"]}


def test_globs_of_one_config_meeting_in_one_destination_leave_one_source(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    """What validate cannot see (globs): the first sync to claim the destination keeps it,
    the other is refused on every run, whatever the order its threads run in."""
    server, corpus = seeded_registry
    root = tmp_path / "store"
    content = [
        {"prefix": "library/alpine/**", "destination": "same", "stripPrefix": True},
        {"prefix": "library/busybox/**", "destination": "same", "stripPrefix": True},
    ]
    registry = {"name": "hub", "urls": [server.url], "content": content, "prune": True}
    config = write_sync_config(tmp_path, root, [registry])
    first = run_sync(config)
    assert first.code == 1
    holder = json.loads((root / "same" / CLAIM_FILE).read_bytes())["repository"]
    other = next(r for r in ("library/alpine", "library/busybox") if r != holder)
    for run in (first, run_sync(config)):
        assert (
            f"hub/{other}: destination 'same' mirrors hub/{holder}, not hub/{other}" in run.output
        )
        assert layout_tags(root) == {"same": corpus.tags[holder]}


def test_a_dry_run_reports_the_refusal_and_writes_nothing(
    seeded_registry: Seeded, tmp_path: Path
) -> None:
    server, _ = seeded_registry
    root, alpine, busybox = alpine_synced_first(server, tmp_path)
    before = files_of(root)
    run = run_sync(busybox, "--dry-run")
    assert run.code == 1
    assert "destination 'same' mirrors hub/library/alpine, not hub/library/busybox" in run.output
    assert files_of(root) == before


def test_a_registry_destination_keeps_its_claim_across_configs(
    seeded_registry: Seeded,
    make_registry: Callable[..., RegistryServer],
    private_redis: RedisServer,
    tmp_path: Path,
) -> None:
    server, corpus = seeded_registry
    dest = make_registry()
    settings = {"destination": {"url": dest.url}, "redis": private_redis.url}
    made = rival_configs(tmp_path, tmp_path / "unused", server, prune=False, settings=settings)
    assert run_sync(made["library/alpine"]).code == 0
    assert dest_tags(dest, "same") == set(corpus.tags["library/alpine"])
    run = run_sync(made["library/busybox"])
    assert run.code == 1
    assert "destination 'same' mirrors hub/library/alpine, not hub/library/busybox" in run.output
    assert dest_tags(dest, "same") == set(corpus.tags["library/alpine"])  # no 1.36 pushed


def dest_tags(dest: RegistryServer, repo: str) -> set[str]:
    answer = requests.get(f"{dest.url}/v2/{repo}/tags/list", timeout=30)
    answer.raise_for_status()
    return set(answer.json()["tags"])


# -- validate --------------------------------------------------------------------------------


def validate(tmp_path: Path, registries: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    config = write_sync_config(tmp_path, tmp_path / "store", registries)
    return subprocess.run([*SYNCWORKER, "validate", "-c", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_validate_refuses_two_literal_rules_into_one_destination(tmp_path: Path) -> None:
    content = [
        {"prefix": "library/alpine", "destination": "same", "stripPrefix": True},
        {"prefix": "/library/busybox", "destination": "same", "stripPrefix": True},
    ]
    done = validate(tmp_path, [{"name": "hub", "urls": ["https://r.example"], "content": content}])
    assert done.returncode == 2
    assert (
        "extensions.sync.registries[0].content[1].prefix: maps hub/library/busybox into 'same',"
        " which extensions.sync.registries[0].content[0].prefix already fills from"
        " hub/library/alpine"
    ) in done.stderr


def test_validate_refuses_two_registries_listing_one_repository(tmp_path: Path) -> None:
    registries = [
        {"name": "one", "urls": ["https://one.example"], "repos": ["team/app", "team/db"]},
        {"name": "two", "urls": ["https://two.example"], "repos": ["team/app"]},
    ]
    done = validate(tmp_path, registries)
    assert done.returncode == 2
    assert (
        "extensions.sync.registries[1].repos[0]: maps two/team/app into 'team/app', which"
        " extensions.sync.registries[0].repos[0] already fills from one/team/app"
    ) in done.stderr


@pytest.mark.parametrize(
    "registries",
    [
        # globs: whether they meet depends on what the upstreams list (the run decides)
        [{"name": "one", "urls": ["https://one.example"]},
         {"name": "two", "urls": ["https://two.example"]}],
        # one literal name, and the same source named twice
        [{"name": "one", "urls": ["https://one.example"], "repos": ["team/app"],
          "content": [{"prefix": "team/app"}, {"prefix": "team/**"}]}],
        # literal names into different destinations
        [{"name": "one", "urls": ["https://one.example"], "repos": ["team/app"]},
         {"name": "two", "urls": ["https://two.example"], "repos": ["team/app"],
          "content": [{"prefix": "team/app", "destination": "two"}]}],
    ],
)  # fmt: skip
def test_validate_accepts_what_does_not_overlap_literally(
    tmp_path: Path, registries: list[dict[str, Any]]
) -> None:
    done = validate(tmp_path, registries)
    assert done.returncode == 0, done.stderr


def test_a_registry_renamed_by_a_new_url_is_told_how_to_keep_its_claims() -> None:
    """A registry without ``name`` is named by its first URL's host: a new URL is a new
    source, and the refusal says how to stay the old one."""
    error = ClaimError("app", "old.example/team/app", "new.example:5000/team/app")
    assert str(error).endswith("; if old.example is this registry renamed, name it 'old.example'")
    assert "renamed" not in str(ClaimError("app", "hub/team/a", "hub/team/b"))
