"""When the client concludes an upstream has no referrers API (and stops asking)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncworker.oci import Digest
from syncworker.registry import RegistryClient
from tests.support.hostile import Answer, HostileRegistry, json_answer

SUBJECT = Digest.of(b"subject")
PATH = f"/v2/app/referrers/{SUBJECT}"


@pytest.fixture
def upstream() -> Iterator[HostileRegistry]:
    server = HostileRegistry()
    yield server
    server.close()


def test_bare_404_means_no_api_and_is_not_asked_again(upstream: HostileRegistry) -> None:
    upstream.route("GET", PATH, Answer(404, b"404 page not found"))  # distribution 2.x
    client = RegistryClient([upstream.url])
    assert client.referrers_api("app", SUBJECT) is None
    assert client.referrers_api("app", SUBJECT) is None
    assert upstream.requests.count(("GET", PATH)) == 1


def test_spec_404_for_a_gone_repo_keeps_the_api(upstream: HostileRegistry) -> None:
    gone = json_answer({"errors": [{"code": "NAME_UNKNOWN", "message": "gone"}]}, 404)
    upstream.route("GET", PATH, gone)
    client = RegistryClient([upstream.url])
    assert client.referrers_api("app", SUBJECT) == []
    assert client.referrers_api("app", SUBJECT) == []
    assert upstream.requests.count(("GET", PATH)) == 2
