"""The pull budget below the end-to-end tests: Docker Hub's headers read; the budget's
contract, the same for one process and for Redis (a pull per GET in flight, answers noted
in any order, the reserve, the refill, one sender finding out an unknown budget); the
manifests it was spent on, kept byte for byte per repository."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from syncworker.coord import Coordinator
from syncworker.errors import SyncworkerError
from syncworker.registry.auth import Credentials
from syncworker.registry.budget import (
    PROBE,
    Headers,
    LocalPullBudget,
    PullBudget,
    identity_of,
    parse_headers,
)
from syncworker.registry.client import RegistryClient
from syncworker.registry.gates import Gates
from syncworker.registry.paid import Kept, LocalPaidManifests, PaidManifests
from tests.support.images import make_image
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer


@pytest.mark.parametrize(
    ("headers", "seen"),
    [
        ({"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"}, (100, 76, 21600)),
        ({"RateLimit-Limit": "5; w=60", "RateLimit-Remaining": "0;w=60"}, (5, 0, 60)),
        ({"ratelimit-limit": "100;w=21600"}, None),
        ({"ratelimit-limit": "lots", "ratelimit-remaining": "3;w=1"}, None),
        ({"ratelimit-limit": "100", "ratelimit-remaining": "3"}, None),  # no window
    ],
)
def test_docker_hubs_headers(headers: dict[str, str], seen: tuple[int, int, int] | None) -> None:
    import urllib3

    assert parse_headers(urllib3.HTTPHeaderDict(headers)) == seen


def test_identity_names_no_login() -> None:
    assert identity_of(None) == "anonymous"
    named = identity_of(Credentials("alice", "s3cret"))
    assert "alice" not in named and "s3cret" not in named
    assert (
        named == identity_of(Credentials("alice", "other")) != identity_of(Credentials("bob", "x"))
    )


@pytest.fixture(params=["local", "redis"])
def shared_coord(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> Iterator[Coordinator | None]:
    """None for the in-process kinds, else a coordinator on Redis for the shared ones;
    its client closed after."""
    if request.param == "local":
        yield None
        return
    client = redis.Redis.from_url(redis_url)
    try:
        yield Coordinator(client, redis_prefix)
    finally:
        client.close()


@pytest.fixture
def budget(shared_coord: Coordinator | None) -> PullBudget:
    if shared_coord is None:
        return LocalPullBudget()
    return shared_coord.pull_budget("hub", "anonymous")


def test_one_sender_finds_out_an_unknown_budget(budget: PullBudget) -> None:
    assert budget.take("a", 0) == PROBE
    assert budget.take("b", 0) == -1  # a waits for a's answer
    budget.note("a", Headers(3, 3, 60), time.time())
    assert budget.take("b", 0) == 0


def test_pulls_in_flight_count_until_answered(budget: PullBudget) -> None:
    assert budget.take("probe", 0) == PROBE
    budget.note("probe", Headers(3, 3, 60), time.time())
    assert [budget.take(t, 0) for t in "abc"] == [0, 0, 0]
    refused = budget.take("d", 0)
    assert refused > time.time() + 50  # refills a window after a pull, not before
    budget.note("a", Headers(3, 2, 60), time.time())
    assert budget.take("d", 0) > 0  # b and c are still in flight


def test_an_older_answer_noted_late_does_not_raise_the_count(budget: PullBudget) -> None:
    sent = time.time() - 5
    assert budget.take("probe", 0) == PROBE
    budget.note("probe", Headers(3, 3, 60), sent)
    assert [budget.take(t, 0) for t in "abc"] == [0, 0, 0]
    budget.note("c", Headers(3, 0, 60), sent)
    budget.note("a", Headers(3, 2, 60), sent)  # computed first, come back last
    budget.note("b", Headers(3, 1, 60), sent)
    assert budget.take("d", 0) > 0


def test_a_later_answer_sees_an_early_refill(budget: PullBudget) -> None:
    assert budget.take("probe", 0) == PROBE
    budget.note("probe", Headers(3, 0, 60), time.time() - 5)
    assert budget.take("a", 0) > 0
    budget.note(None, Headers(3, 3, 60), time.time() + 2)  # a HEAD sent after a refill
    assert budget.take("a", 0) == 0


def test_the_reserve_stays_unspent(budget: PullBudget) -> None:
    assert budget.take("probe", 2) == PROBE
    budget.note("probe", Headers(5, 3, 60), time.time())
    assert budget.take("a", 2) == 0
    assert budget.take("b", 2) > 0


def test_an_upstream_without_a_budget_is_never_held(budget: PullBudget) -> None:
    assert budget.take("probe", 0) == PROBE
    budget.unlimited("probe")
    assert [budget.take(t, 0) for t in "abcdef"] == [0] * 6


def test_a_missing_manifest_leaves_no_pull_in_flight(
    budget: PullBudget, registry: RegistryServer
) -> None:
    # A real registry: no budget headers; its 404 for a missing tag declares nothing.
    push_image(registry.url, "budget/app", "v1", make_image(seed="budget-404"))
    with RegistryClient([registry.url], gates=Gates(budget=budget)) as client:
        with pytest.raises(SyncworkerError, match="404"):
            client.get_manifest("budget/nothere", "v1")
        # The 404's pull is settled: the next sender finds out, instead of waiting for it.
        assert budget.take("next", 0) == PROBE
        budget.forgo("next")
        client.get_manifest("budget/app", "v1")


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_refills_a_window_after_the_last_pull() -> None:
    clock = Clock()
    budget = LocalPullBudget(clock)
    assert budget.take("probe", 0) == PROBE
    budget.note("probe", Headers(2, 1, 60), clock.now)
    assert budget.take("a", 0) == 0
    budget.note("a", Headers(2, 0, 60), clock.now)
    assert budget.take("b", 0) == clock.now + 60
    clock.now += 60
    assert budget.take("b", 0) == 0


@pytest.fixture
def paid(shared_coord: Coordinator | None) -> PaidManifests:
    if shared_coord is None:
        return LocalPaidManifests()
    return shared_coord.paid_manifests("hub")


def test_a_paid_manifest_is_kept_byte_for_byte_per_repository(paid: PaidManifests) -> None:
    raw = b'{"schemaVersion": 2,  "mediaType": "x"}\n'
    paid.keep("lib/app", "sha256:aa", Kept(raw, "application/vnd.oci.image.index.v1+json"), 60)
    paid.keep("lib/app", "sha256:bb", Kept(raw, None), 60)
    assert paid.find("lib/app", "sha256:aa", 0) == (raw, "application/vnd.oci.image.index.v1+json")
    assert paid.find("lib/app", "sha256:bb", 0) == (raw, None)
    assert paid.find("lib/other", "sha256:aa", 0) is None  # another repository paid nothing


def test_a_paid_manifest_is_dropped_when_its_time_is_up() -> None:
    clock = Clock()
    paid = LocalPaidManifests(clock)
    paid.keep("lib/app", "sha256:aa", Kept(b"{}", None), 60)
    clock.now += 59
    assert paid.find("lib/app", "sha256:aa", 0) is not None
    clock.now += 1
    assert paid.find("lib/app", "sha256:aa", 0) is None


def test_a_paid_manifest_found_is_kept_from_then() -> None:
    clock = Clock()
    paid = LocalPaidManifests(clock)
    paid.keep("lib/app", "sha256:aa", Kept(b"{}", None), 60)
    clock.now += 50
    assert paid.find("lib/app", "sha256:aa", 60) is not None
    clock.now += 59
    assert paid.find("lib/app", "sha256:aa", 0) is not None
    clock.now += 1
    assert paid.find("lib/app", "sha256:aa", 0) is None
