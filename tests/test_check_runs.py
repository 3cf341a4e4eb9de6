"""A check as a run, without worker processes: fanned out into a real broker, counted into
its run once per repository, and sent again by the sweep with the options it started
with. With workers: tests/test_check_cluster.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
import redis
import yaml
from celery import Celery

from syncworker.celeryapp import create_app
from syncworker.config import load_config
from syncworker.coord import Coordinator, RunFailure
from syncworker.engine.checkrun import CheckOutcome
from syncworker.engine.results import Failure, RepoResult
from syncworker.engine.treecheck import BrokenTree, Damage, RepoCheck
from syncworker.oci import Descriptor, Digest
from syncworker.oci.mediatypes import OCI_MANIFEST
from syncworker.runs.storecheck import (
    check_label,
    check_mode,
    failure_line,
    fan_out_check,
    record_check,
)
from syncworker.runs.sweep import Resend, end_lost_fan_out, stalled
from syncworker.store import IndexEntry
from syncworker.tasks import _resend_repos
from syncworker.worker.checks import start_check
from syncworker.worker.tasknames import QUEUE_REPO, QUEUE_WALK, TASK_CHECK_REPO, TASK_SWEEP
from tests.support.cluster import queued_args, queued_task
from tests.support.redis_server import RedisServer


@pytest.fixture
def coord(redis_url: str, redis_prefix: str) -> Iterator[Coordinator]:
    made = Coordinator.from_url(redis_url, prefix=redis_prefix.rstrip(":"))
    yield made
    made.close()


def _broken(repo: str, tag: str) -> BrokenTree:
    digest = Digest.of(f"{repo}:{tag}".encode())
    entry = IndexEntry(Descriptor(OCI_MANIFEST, digest, 10), tag)
    return BrokenTree(repo, (entry,), (Damage(Digest.of(b"layer"), "absent", "blob"),))


def test_labels_carry_the_options_and_are_no_registry() -> None:
    for deep in (False, True):
        for repair in (False, True):
            assert check_mode(check_label(deep=deep, repair=repair)) == (deep, repair)
    assert check_label(deep=True, repair=False) == "(check --deep)"
    assert check_mode("docker.io") is None


def test_a_check_run_counts_each_repository_once_and_keeps_what_is_broken(
    coord: Coordinator,
) -> None:
    sent: list[str] = []

    def enqueue(repos: Sequence[str], run_id: str) -> None:
        sent.extend(repos)

    label = check_label(deep=True, repair=True)
    fan_out_check(coord, label, "check-1", ["a", "b", "c"], enqueue, lambda: None)
    assert sent == ["a", "b", "c"]
    status = coord.run_status("check-1")
    assert status is not None and (status.registry, status.total, status.state) == (
        label,
        3,
        "running",
    )
    record_check(coord, "check-1", CheckOutcome(RepoCheck("a", trees=2, bytes_hashed=100)))
    broken = RepoCheck("b", trees=3, broken=[_broken("b", "v1")])
    fixed = RepoResult("up", "b", "b", copied=["b:v1"])
    record_check(coord, "check-1", CheckOutcome(broken, fixed, RepoCheck("b", trees=3)))
    still = RepoCheck("c", trees=1, broken=[_broken("c", "v2")])
    refused = RepoResult("up", "c", "c", failures=[Failure("up", "c", "v2", "c:v2: no")])
    record_check(coord, "check-1", CheckOutcome(still, refused, still))
    record_check(coord, "check-1", CheckOutcome(still, refused, still))  # a redelivery

    status = coord.run_status("check-1")
    assert status is not None and status.state == "finished"
    counters = status.counters
    assert (counters["repos_done"], counters["repos_failed"]) == (2, 1)
    assert (counters["images_skipped"], counters["images_copied"]) == (4, 1)
    assert counters["images_failed"] == 1
    reasons = [f.reason for f in status.failures]
    assert reasons[0].startswith("BROKEN c:v2 (") and reasons[0].endswith("absent")
    assert reasons[1:] == ["NOT REPAIRED c:v2: no"]
    assert [failure_line(f) for f in status.failures] == reasons
    # A task given up outside the check (its worker died under it again and again).
    lost = RunFailure("d", None, "started 6 times without finishing")
    assert failure_line(lost) == "FAILED d: started 6 times without finishing"


class _Wired(NamedTuple):
    app: Celery
    coord: Coordinator
    broker: redis.Redis


@pytest.fixture
def wired(tmp_path: Path, private_redis: RedisServer) -> Iterator[_Wired]:
    """A Celery app, a coordinator and a broker client on one private Redis, from a
    config with no registries; all closed after."""
    path = tmp_path / "config.yaml"
    doc = {
        "storage": {"rootDirectory": str(tmp_path / "store")},
        "extensions": {"sync": {"registries": []}},
        "syncworker": {"redis": private_redis.url},
    }
    path.write_text(yaml.safe_dump(doc))
    app = create_app(load_config(path))
    coord = Coordinator.from_url(private_redis.url)
    broker = redis.Redis.from_url(private_redis.url)
    try:
        yield _Wired(app, coord, broker)
    finally:
        app.close()
        coord.close()
        broker.close()


def test_start_check_sends_a_task_per_repository_and_the_sweep_resends_with_the_options(
    wired: _Wired,
) -> None:
    app, coord, broker = wired
    run_id = start_check(app, coord, ["lib/a", "lib/b"], deep=True, repair=False)
    queued = broker.lrange(QUEUE_REPO, 0, -1)
    assert {queued_task(raw) for raw in queued} == {TASK_CHECK_REPO}
    assert sorted(queued_args(raw)[0] for raw in queued) == ["lib/a", "lib/b"]
    assert all(queued_args(raw)[1:] == [run_id, True, False] for raw in queued)
    broker.delete(QUEUE_REPO)  # lost with the broker, say

    label = check_label(deep=True, repair=False)
    mark, _ = stalled(coord, label, run_id, None)
    _, resend = stalled(coord, label, run_id, mark)
    assert resend.repos == ["lib/a", "lib/b"]
    _resend_repos(app, label, run_id, resend.repos)
    again = broker.lrange(QUEUE_REPO, 0, -1)
    assert sorted(queued_args(raw) for raw in again) == [
        ["lib/a", run_id, True, False],
        ["lib/b", run_id, True, False],
    ]


def test_a_check_whose_command_died_during_the_fan_out_ends_failed(
    wired: _Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command dies after sending the first repositories: the sweep it sent first
    finds the run not moving and not fanned out, and ends it failed, saying why; a
    fan-out that ended is swept as before."""
    app, coord, broker = wired
    monkeypatch.setattr("syncworker.runs.storecheck.FANOUT_BATCH", 1)
    batches: list[Sequence[str]] = []

    def dying(app: object, task: str, args: Sequence[Sequence[object]]) -> None:
        batches.append([a[0] for a in args])  # type: ignore[misc]
        if len(batches) == 2:
            raise KeyboardInterrupt  # the command killed part-way

    monkeypatch.setattr("syncworker.worker.checks.send_each", dying)
    with pytest.raises(KeyboardInterrupt):
        start_check(app, coord, ["lib/a", "lib/b", "lib/c"], deep=False, repair=False)
    sweeps = broker.lrange(QUEUE_WALK, 0, -1)
    assert [queued_task(raw) for raw in sweeps] == [TASK_SWEEP]
    label, run_id, _ = queued_args(sweeps[0])
    assert label == check_label(deep=False, repair=False)

    mark, resend = stalled(coord, label, run_id, None)
    assert mark is not None and not resend.fan_out_lost  # it may still be sending
    _, resend = stalled(coord, label, run_id, mark)
    assert resend.fan_out_lost
    end_lost_fan_out(coord, label, run_id)
    status = coord.run_status(run_id)
    assert status is not None and status.state == "failed"
    assert [f.reason for f in status.failures] == [
        "the check stopped sending repositories after 1 (the command that started it"
        " died); run the check again"
    ]
    assert stalled(coord, label, run_id, mark) == (None, Resend())
