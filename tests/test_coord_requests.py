"""Requests of the HTTP API in Redis: opened queued, moved to running then done or failed,
never moved once ended nor created by a task nobody asked about; each change re-arms the TTL."""

from __future__ import annotations

import pytest

from syncworker.coord import Coordinator
from syncworker.coord.keys import REQUEST_TTL, Keys

# The shared fixtures: coord (real Redis and fakeredis), real_coord.
pytest_plugins = ["tests.test_coord_support"]


def test_a_request_moves_from_queued_to_its_end_once(coord: Coordinator) -> None:
    coord.open_request("t1", "image", "docker", "library/alpine", "3.20")
    status = coord.request_status("t1")
    assert status is not None and (status.state, status.started, status.result) == (
        "queued",
        None,
        None,
    )
    assert (status.kind, status.registry, status.repo, status.reference) == (
        "image",
        "docker",
        "library/alpine",
        "3.20",
    )
    assert coord.move_request("t1", "running")
    result = {"copied": 0, "failures": ["docker/library/alpine:3.20: HTTP 404"]}
    assert coord.move_request("t1", "failed", result)
    ended = coord.request_status("t1")
    assert ended is not None and ended.ended and ended.state == "failed"
    assert ended.result == result and ended.started is not None and ended.finished is not None
    # A late duplicate delivery neither restarts nor rewrites it.
    assert not coord.move_request("t1", "running")
    assert not coord.move_request("t1", "done", {"copied": 1, "failures": []})
    assert coord.request_status("t1") == ended


def test_only_requests_the_api_opened_are_moved(coord: Coordinator) -> None:
    assert not coord.move_request("never-opened", "running")
    assert not coord.move_request("never-opened", "done", {"failures": []})
    assert coord.request_status("never-opened") is None
    coord.open_request("t2", "repo", "docker", "library/alpine")
    coord.forget_request("t2")
    assert coord.request_status("t2") is None
    with pytest.raises(ValueError):
        coord.move_request("t2", "queued")


def test_every_change_rearms_the_ttl(real_coord: Coordinator) -> None:
    key = Keys(real_coord.prefix).request("t3")
    real_coord.open_request("t3", "repo", "docker", "library/alpine")
    assert 0 < real_coord.client.pttl(key) <= REQUEST_TTL * 1000
    real_coord.client.pexpire(key, 5000)
    real_coord.move_request("t3", "running")
    assert real_coord.client.pttl(key) > 5000
