"""The Celery side without Celery processes: policy, settings, schedule, and the walk logic
against a real Redis and the real registry. End to end: test_celery_e2e.py."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery.schedules import crontab

from syncworker.celeryapp import create_app
from syncworker.cli import build_parser, main
from syncworker.config import Config, load_config
from syncworker.config.mirrorbuild import build_mirror
from syncworker.config.storeopen import open_store
from syncworker.coord import Coordinator, LockBusy, RunStatus
from syncworker.engine import Failure, Mirror, RepoResult
from syncworker.errors import ConfigError, RegistryError, TransportError
from syncworker.retry import TASKS, backoff_delay
from syncworker.runs.catalogwalk import (
    WALK_AHEAD_WAIT,
    Claim,
    Step,
    claim_walk,
    continue_walk,
    start_walk,
    trigger_walk,
    walk_page,
)
from syncworker.runs.repocount import record_repo, record_repo_lost
from syncworker.runs.sweep import stalled
from syncworker.worker.policy import retry_delay
from syncworker.worker.schedule import beat_schedule
from syncworker.worker.settings import VISIBILITY_TIMEOUT, celery_settings
from syncworker.worker.tasknames import (
    QUEUE_ONDEMAND,
    QUEUE_REPO,
    QUEUE_WALK,
    TASK_SYNC_IMAGE,
    TASK_SYNC_REPO,
    TASK_WALK,
)
from tests.support.corpus import Corpus
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

REGISTRY = "up"


def write_config(tmp_path: Path, **sections: Any) -> Path:
    data: dict[str, Any] = {
        "storage": {"rootDirectory": str(tmp_path / "store")},
        "extensions": {"sync": {"registries": sections.pop("registries", [])}},
        "syncworker": sections.pop("syncworker", {"redis": "redis://127.0.0.1:6379/0"}),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def config_with(tmp_path: Path, **sections: Any) -> Config:
    return load_config(write_config(tmp_path, **sections))


# -- policy ---------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_jitter_only_shortens() -> None:
    delays = [backoff_delay(n, base=1.0, cap=10.0) for n in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_delay(2, base=1.0, cap=10.0, jitter=0.999) == pytest.approx(2.002, rel=1e-3)
    assert backoff_delay(10_000, base=1.0, cap=10.0) == 10.0  # no overflow on a long outage
    with pytest.raises(ValueError):
        backoff_delay(-1, base=1.0, cap=10.0)


def test_retry_delay_honours_retry_after_and_locks_retry_sooner() -> None:
    slow_down = RegistryError("GET", "http://x/v2/", 429, retry_after=120.0)
    assert retry_delay(slow_down, 0) == 120.0
    assert retry_delay(RegistryError("GET", "u", 503, retry_after=1e6), 0) == TASKS.cap
    assert retry_delay(TransportError("refused"), 0) == TASKS.base
    assert retry_delay(LockBusy("k", 10.0), 0) < TASKS.base


# -- settings and schedule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (
            {"task_time_limit": 20},
            r"task_soft_time_limit \(10800 s\) must be below task_time_limit \(20 s\)",
        ),
        (
            {"task_soft_time_limit": 60, "task_time_limit": 60},
            r"\(60 s\) must be below task_time_limit \(60 s\)",
        ),
        (
            {"task_time_limit": "20"},
            r"task_time_limit must be a number of seconds or null, got '20'",
        ),
    ],
)
def test_a_soft_time_limit_not_below_the_hard_one_is_refused(
    tmp_path: Path, limits: dict[str, int], message: str
) -> None:
    """Refused when the config is read (so by ``validate`` too): Celery would apply such a
    hard limit only at the soft one's time. The soft one off, or below it, is fine."""
    with pytest.raises(ConfigError, match=r"syncworker\.celery.*" + message):
        config_with(tmp_path, syncworker={"redis": "redis://r:6379/1", "celery": limits})
    for fine in ({"task_soft_time_limit": None, "task_time_limit": 20},
                 {"task_soft_time_limit": 10, "task_time_limit": 20}):  # fmt: skip
        config = config_with(tmp_path, syncworker={"redis": "redis://r:6379/1", "celery": fine})
        assert celery_settings(config)["task_time_limit"] == 20


def test_settings_defaults_and_config_merged_over_them(tmp_path: Path) -> None:
    config = config_with(tmp_path, syncworker={"redis": "redis://r:6379/1"})
    settings = celery_settings(config)
    assert settings["broker_url"] == settings["result_backend"] == "redis://r:6379/1"
    assert settings["task_acks_late"] and settings["task_reject_on_worker_lost"]
    assert settings["worker_prefetch_multiplier"] == 1
    assert settings["accept_content"] == ["json"] and settings["task_serializer"] == "json"
    assert settings["broker_transport_options"]["visibility_timeout"] == VISIBILITY_TIMEOUT
    # kombu looks for expired unacknowledged messages every interval x throttle seconds.
    restore = settings["broker_transport_options"]
    assert restore["unacked_restore_interval"] * restore["unacked_restore_throttle"] == 5
    assert VISIBILITY_TIMEOUT > settings["task_time_limit"] > settings["task_soft_time_limit"]
    assert {q.name for q in settings["task_queues"]} == {QUEUE_WALK, QUEUE_REPO, QUEUE_ONDEMAND}
    assert settings["task_routes"][TASK_SYNC_IMAGE] == {"queue": QUEUE_ONDEMAND}

    overrides = {
        "broker_url": "amqp://guest@rabbit:5672//",
        "broker_transport_options": {"unacked_restore_interval": 1},
        "worker_prefetch_multiplier": 4,
    }
    config = config_with(tmp_path, syncworker={"redis": "redis://r:6379/1", "celery": overrides})
    settings = celery_settings(config)
    assert settings["broker_url"] == "amqp://guest@rabbit:5672//"
    assert settings["result_backend"] == "redis://r:6379/1"  # coordination stays on Redis
    assert settings["worker_prefetch_multiplier"] == 4
    transport = settings["broker_transport_options"]
    assert transport == {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": 30,
    }


def test_celery_needs_a_redis_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNCWORKER_REDIS_URL", raising=False)
    with pytest.raises(ConfigError, match="syncworker.redis"):
        create_app(config_with(tmp_path, syncworker={}))


def test_app_registers_the_public_tasks(tmp_path: Path) -> None:
    app = create_app(config_with(tmp_path))
    assert {TASK_WALK, TASK_SYNC_REPO, TASK_SYNC_IMAGE} <= set(app.tasks)
    assert app.tasks[TASK_SYNC_IMAGE].ignore_result is False  # callers may wait on it
    assert app.tasks[TASK_SYNC_REPO].ignore_result is True


def test_beat_schedule_from_poll_interval_and_cron(tmp_path: Path) -> None:
    registries = [
        {"urls": ["http://a:5000"], "name": "a", "pollInterval": "6h"},
        {"urls": ["http://b:5000"], "name": "b", "schedule": "0 2 * * 1-5"},
        {"urls": ["http://c:5000"], "name": "c", "onDemand": True},
    ]
    schedule = beat_schedule(config_with(tmp_path, registries=registries), TASK_WALK, QUEUE_WALK)
    assert set(schedule) == {"syncworker.walk:a", "syncworker.walk:b"}
    every = schedule["syncworker.walk:a"]
    assert every["schedule"] == timedelta(hours=6) and every["args"] == ["a"]
    assert every["options"] == {"queue": QUEUE_WALK, "expires": 6 * 3600.0}
    nightly = schedule["syncworker.walk:b"]["schedule"]
    assert isinstance(nightly, crontab)
    assert nightly.hour == {2} and nightly.minute == {0} and nightly.day_of_week == set(range(1, 6))


# -- CLI --------------------------------------------------------------------------------------


def test_worker_options_pass_through_to_celery() -> None:
    args, extra = build_parser().parse_known_args(
        ["worker", "-c", "f.yaml", "--concurrency", "2", "-Q", QUEUE_REPO, "-P", "threads"]
    )
    assert args.config == "f.yaml" and args.accepts_extra
    assert extra == ["--concurrency", "2", "-Q", QUEUE_REPO, "-P", "threads"]


def test_trigger_without_redis_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SYNCWORKER_REDIS_URL", raising=False)
    path = write_config(tmp_path, syncworker={})
    assert main(["trigger", "-c", str(path)]) == 2
    assert "syncworker.redis" in capsys.readouterr().err


def test_status_shows_counts_and_failures_never_the_redis_password(
    tmp_path: Path, private_redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # A private Redis: the CLI uses the default key prefix, which a shared one must not get.
    redis_url = private_redis.url
    url = redis_url.replace("redis://", "redis://:hunter2@")  # Redis ignores an unset password
    coord = Coordinator.from_url(redis_url)
    run_id = coord.start_run(REGISTRY)
    coord.incr(run_id, repos_total=2, repos_done=1)
    coord.record_failure(run_id, "lib/a", "v1", "GET http://up/v2/lib/a: HTTP 500")
    path = write_config(tmp_path, syncworker={"redis": url})
    assert main(["status", "-c", str(path), run_id]) == 0
    out = capsys.readouterr().out
    assert f"{run_id} {REGISTRY} running: 1/2 repos" in out
    assert "FAILED lib/a" in out and "v1: GET http://up/v2/lib/a: HTTP 500" in out
    assert "hunter2" not in out
    assert main(["status", "-c", str(path), "no-such-run"]) == 1


# -- the walk, on a real Redis and the real registry ------------------------------------------


@pytest.fixture
def coord(redis_url: str, redis_prefix: str) -> Iterator[Coordinator]:
    made = Coordinator.from_url(redis_url, prefix=redis_prefix.rstrip(":"))
    yield made
    made.close()


@pytest.fixture
def mirror(
    tmp_path: Path, seeded_registry: tuple[RegistryServer, Corpus], coord: Coordinator
) -> Iterator[Mirror]:
    server, _ = seeded_registry
    config = config_with(tmp_path, registries=[{"urls": [server.url], "name": REGISTRY}])
    store = open_store(config.storage.root_directory, config.storage.storage_driver)
    with build_mirror(config, store, coord) as made:
        yield made


def walk_all(coord: Coordinator, mirror: Mirror, run_id: str, page: int) -> list[str]:
    sent: list[str] = []

    def enqueue(registry: str, repos: Sequence[str], run: str) -> None:
        assert (registry, run) == (REGISTRY, run_id)
        sent.extend(repos)

    while (step := walk_page(coord, mirror, REGISTRY, run_id, enqueue, page)) is Step.MORE:
        pass
    assert step is Step.DONE
    return sent


def test_walk_pages_fan_out_each_repo_once_then_the_run_finishes(
    coord: Coordinator, mirror: Mirror, seeded_registry: tuple[RegistryServer, Corpus]
) -> None:
    _, corpus = seeded_registry
    claim = claim_walk(coord, REGISTRY, "run-1")
    assert claim.started and claim.run_id == "run-1"
    assert claim_walk(coord, REGISTRY, "run-2") == type(claim)("run-1", False)  # a no-op
    sent = walk_all(coord, mirror, "run-1", page=2)
    assert sent == corpus.repositories
    assert coord.current_walk(REGISTRY) is None and coord.cursor(REGISTRY) is None
    assert walk_page(coord, mirror, REGISTRY, "run-1", lambda *a: None, 2) is Step.STALE
    status = coord.run_status("run-1")
    assert status is not None and status.total == len(sent) and status.state == "running"
    for repo in sent:
        record_repo(coord, "run-1", RepoResult(REGISTRY, repo, repo, copied=["t"]))
    record_repo(coord, "run-1", RepoResult(REGISTRY, sent[0], sent[0], copied=["t"]))  # again
    status = coord.run_status("run-1")
    assert status is not None and status.state == "finished" and status.done == len(sent)
    assert status.counters["images_copied"] == len(sent)
    # A redelivered trigger of a walk that already ended does not start it again.
    assert not claim_walk(coord, REGISTRY, "run-1").started


def test_a_redelivered_page_sends_only_what_its_first_delivery_did_not(
    coord: Coordinator, mirror: Mirror, seeded_registry: tuple[RegistryServer, Corpus]
) -> None:
    _, corpus = seeded_registry
    assert claim_walk(coord, REGISTRY, "run-r").started
    first: list[str] = []
    assert (
        walk_page(coord, mirror, REGISTRY, "run-r", lambda g, r, i: first.extend(r), 3) is Step.MORE
    )
    # The same page again, as if its worker died before moving the cursor.
    assert coord.advance_cursor(REGISTRY, coord.cursor(REGISTRY), None)
    again: list[str] = []
    assert (
        walk_page(coord, mirror, REGISTRY, "run-r", lambda g, r, i: again.extend(r), 3) is Step.MORE
    )
    assert first == corpus.repositories[:3] and again == []
    rest = walk_all(coord, mirror, "run-r", page=3)
    assert first + rest == corpus.repositories
    status = coord.run_status("run-r")
    assert status is not None and status.total == len(corpus.repositories)


class RecordingQueue:
    """A walk's messages kept instead of sent; ``waiting`` repositories wait for workers."""

    def __init__(self, waiting: int) -> None:
        self.waiting = waiting
        self.pages: list[tuple[str, float, bool]] = []  # run id, delay, first
        self.repos: list[str] = []
        self.sweeps: list[str] = []

    def send_page(
        self, registry: str, run_id: str, *, delay: float = 0.0, first: bool = False
    ) -> None:
        self.pages.append((run_id, delay, first))

    def send_repos(self, registry: str, repos: Sequence[str], run_id: str) -> None:
        self.repos.extend(repos)

    def repos_waiting(self) -> int:
        return self.waiting

    def start_sweep(self, registry: str, run_id: str) -> None:
        self.sweeps.append(run_id)


def test_a_walk_holds_its_page_back_while_walk_ahead_repositories_wait(
    coord: Coordinator, mirror: Mirror, seeded_registry: tuple[RegistryServer, Corpus]
) -> None:
    _, corpus = seeded_registry
    queue = RecordingQueue(waiting=3)
    assert trigger_walk(coord, queue, REGISTRY, "run-w") == Claim("run-w", True)
    assert queue.sweeps == ["run-w"]
    # walkAhead 3, and 3 wait: nothing is listed or sent, the page comes again later.
    assert continue_walk(coord, mirror, queue, REGISTRY, "run-w", 2, 3) is Step.WAIT
    assert queue.repos == [] and coord.cursor(REGISTRY) is None
    assert queue.pages == [("run-w", WALK_AHEAD_WAIT, False)]
    queue.waiting = 2
    assert continue_walk(coord, mirror, queue, REGISTRY, "run-w", 2, 3) is Step.MORE
    assert queue.repos == corpus.repositories[:2]
    assert queue.pages[-1] == ("run-w", 0.0, False)
    # Another trigger, or a start on demand, names the walk in progress and sends nothing.
    assert trigger_walk(coord, queue, REGISTRY, "run-x") == Claim("run-w", False)
    assert start_walk(coord, queue, REGISTRY) == Claim("run-w", False)
    assert len(queue.pages) == 2 and queue.sweeps == ["run-w"]


def test_a_walk_started_on_demand_sends_its_first_page_under_its_run_id(
    coord: Coordinator,
) -> None:
    queue = RecordingQueue(waiting=0)
    claim = start_walk(coord, queue, REGISTRY)
    assert claim.started and coord.current_walk(REGISTRY) == claim.run_id
    assert queue.pages == [(claim.run_id, 0.0, True)] and queue.sweeps == [claim.run_id]


def test_failures_are_recorded_and_a_lost_repo_counts_once(coord: Coordinator) -> None:
    run_id = claim_walk(coord, REGISTRY, "run-f").run_id
    assert coord.mark_enqueued(run_id, "lib/a") and coord.mark_enqueued(run_id, "lib/b")
    coord.end_walk(REGISTRY, run_id)
    result = RepoResult(REGISTRY, "lib/a", "lib/a")
    result.failures.append(Failure(REGISTRY, "lib/a", "v1", "HTTP 500"))
    record_repo(coord, run_id, result)
    record_repo_lost(coord, run_id, "lib/b", "SoftTimeLimitExceeded")
    record_repo_lost(coord, run_id, "lib/b", "SoftTimeLimitExceeded")
    status = coord.run_status(run_id)
    assert isinstance(status, RunStatus) and status.state == "finished"
    assert status.counters["repos_failed"] == 2 and status.counters["images_failed"] == 1
    assert [(f.repo, f.tag) for f in status.failures] == [("lib/a", "v1"), ("lib/b", None)]


def test_a_cursor_reached_again_from_elsewhere_is_a_loop(coord: Coordinator) -> None:
    run_id = claim_walk(coord, REGISTRY, "run-c").run_id
    assert coord.note_cursor(run_id, None, "lib/a")
    assert coord.note_cursor(run_id, None, "lib/a")  # the same page delivered again
    assert coord.note_cursor(run_id, "lib/a", "lib/b")
    assert not coord.note_cursor(run_id, "lib/b", "lib/a")
    assert coord.note_cursor("run-other", "lib/b", "lib/a")  # each run its own


def test_starts_that_never_ended_are_counted_per_work(coord: Coordinator) -> None:
    assert [coord.delivery_started("task-1:0") for _ in range(3)] == [1, 2, 3]
    assert coord.delivery_started("task-1:1") == 1
    # Each end takes off its own start only: two starts died, one ended.
    coord.delivery_ended("task-1:0")
    assert coord.delivery_started("task-1:0") == 3
    for _ in range(5):  # more ends than starts never count below zero
        coord.delivery_ended("task-1:1")
    assert coord.delivery_started("task-1:1") == 1


def test_sweep_resends_only_when_the_run_stopped_moving(coord: Coordinator) -> None:
    run_id = claim_walk(coord, REGISTRY, "run-s").run_id
    coord.mark_enqueued(run_id, "lib/a")
    coord.mark_enqueued(run_id, "lib/b")
    mark, resend = stalled(coord, REGISTRY, run_id, None)
    assert mark is not None and not resend.walk and not resend.repos  # first look
    coord.incr(run_id, once_for="lib/a", repos_done=1)
    moved, resend = stalled(coord, REGISTRY, run_id, mark)
    assert moved != mark and not resend.repos
    same, resend = stalled(coord, REGISTRY, run_id, moved)
    assert same == moved and resend.walk and not resend.repos  # the walk page is stuck
    coord.end_walk(REGISTRY, run_id)
    ended, resend = stalled(coord, REGISTRY, run_id, same)
    assert ended != same and not resend.walk and not resend.repos
    _, resend = stalled(coord, REGISTRY, run_id, ended)
    assert not resend.walk and resend.repos == ["lib/b"]  # lost after the walk ended
    coord.incr(run_id, once_for="lib/b", repos_done=1)
    assert stalled(coord, REGISTRY, run_id, ended)[0] is None  # finished: the sweep stops


def test_status_json_output(
    tmp_path: Path, private_redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    coord = Coordinator.from_url(private_redis.url)
    run_id = coord.start_run(REGISTRY)
    path = write_config(tmp_path, syncworker={"redis": private_redis.url})
    assert main(["status", "-c", str(path), run_id, "--json"]) == 0
    shown = json.load(io.StringIO(capsys.readouterr().out))
    assert shown["id"] == run_id and shown["state"] == "running" and shown["eta_seconds"] is None


def test_trigger_whose_broker_is_down_ends_its_walk(
    tmp_path: Path, private_redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    celery = {"broker_url": closed, "task_publish_retry_policy": {"max_retries": 1}}
    path = write_config(
        tmp_path,
        registries=[{"urls": ["http://127.0.0.1:9"], "name": REGISTRY}],
        syncworker={"redis": private_redis.url, "celery": celery},
    )
    assert main(["trigger", "-c", str(path)]) == 1
    assert "could not send syncworker.walk_catalog to the broker" in capsys.readouterr().err
    coord = Coordinator.from_url(private_redis.url)
    assert coord.current_walk(REGISTRY) is None  # the next trigger is not blocked
    (run,) = coord.runs()
    assert run.state == "failed" and run.failures[0].repo == "(catalog)"


def test_trigger_image_wait_past_its_timeout_says_so_and_fails(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    """No worker takes the task: --timeout ends the wait with one line, not an internal
    error (the task stays queued for the workers)."""
    path = write_config(
        tmp_path,
        registries=[{"urls": ["http://127.0.0.1:9"], "name": REGISTRY}],
        syncworker={"redis": private_redis.url},
    )
    args = ["trigger", "-c", str(path), "--image", "team/app:v1", "--wait", "--timeout", "0.2"]
    done = subprocess.run(
        [sys.executable, "-m", "syncworker", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "gave up waiting (--timeout)" in done.stderr, done.stderr
    assert "internal error" not in done.stderr
