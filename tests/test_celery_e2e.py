"""Celery end to end: real redis-server, real `syncworker worker` processes, the
real registry upstream, a filesystem store checked with skopeo.

Every wait polls with a deadline (DEADLINE) and never asserts on elapsed time. Each test
has its own private Redis (queues and run state start empty) and its own store; the upstream
is shared by the module and read-only, so request counts are compared as differences.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis
import yaml

from syncworker.celeryapp import create_app
from syncworker.config import load_config
from syncworker.coord import Coordinator, RunStatus
from syncworker.worker.names import TASK_SYNC_IMAGE, TASK_WALK
from tests.support.corpus import Corpus, seed_many
from tests.support.ports import wait_until
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# The `syncworker` command without relying on an installed entry point.
SYNCWORKER = [sys.executable, "-c", "import sys; from syncworker.cli import main; sys.exit(main())"]
REGISTRY = "up"
REPOS, TAGS = 24, 2
PAGE_SIZE = 5  # 24 repositories: five catalog pages
# Generous: a loaded 2-core CI box starts a Celery worker in seconds, not milliseconds.
DEADLINE = 120.0
# Short enough that a SIGKILLed worker's task comes back within the test (production: hours).
VISIBILITY_TIMEOUT = 6
# Restore sweeps every second; a sweep mutex left by a SIGKILLed worker expires soon.
# Below VISIBILITY_TIMEOUT: a sweep waits in a worker as an unacknowledged ETA message.
SWEEP_SECONDS = 4
FAST_RESTORE = {
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 3,
}


# -- services -----------------------------------------------------------------------------


class Upstream(Protocol):
    @property
    def url(self) -> str: ...


@dataclass
class Cluster:
    """A config file and the worker/beat processes started on it."""

    workdir: Path
    upstream: Upstream
    redis_url: str
    page_size: int = PAGE_SIZE
    sweep_seconds: float = SWEEP_SECONDS
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    config_path: Path = field(init=False)
    store: Path = field(init=False)

    def __post_init__(self) -> None:
        self.store = self.workdir / "store"
        self.config_path = self.workdir / "syncworker.yaml"
        self.write_config()

    def write_config(self, **registry: Any) -> None:
        config = {
            "storage": {"rootDirectory": str(self.store)},
            "extensions": {"sync": {"registries": [
                {"urls": [self.upstream.url], "name": REGISTRY, **registry}
            ]}},
            "syncworker": {
                "redis": self.redis_url,
                "celery": {
                    "broker_transport_options": {
                        "visibility_timeout": VISIBILITY_TIMEOUT, **FAST_RESTORE
                    },
                    "redbeat_lock_timeout": 5,
                    "beat_max_loop_interval": 1,
                },
            },
        }  # fmt: skip
        self.config_path.write_text(yaml.safe_dump(config))

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWORKER_")}
        env["SYNCWORKER_CATALOG_PAGE_SIZE"] = str(self.page_size)
        env["SYNCWORKER_SWEEP_SECONDS"] = str(self.sweep_seconds)
        return {**env, **self.extra_env}

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [*SYNCWORKER, *args], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.procs[name] = proc
        return proc

    def worker(self, name: str, *options: str, wait: bool = True) -> subprocess.Popen[bytes]:
        """`syncworker worker` with one prefork child unless ``options`` say otherwise."""
        defaults = ["--concurrency", "1", "-P", "prefork"] if "-P" not in options else []
        args = ["worker", "-c", str(self.config_path), "-n", f"{name}@%h", "--without-mingle",
                "--without-gossip", *defaults, *options]  # fmt: skip
        proc = self._spawn(name, args)
        if wait:
            ready = wait_until(lambda: " ready." in self.log(name), timeout=DEADLINE,
                               alive=lambda: proc.poll() is None)  # fmt: skip
            assert ready, f"worker {name} did not start:\n{self.log(name)[-3000:]}"
        return proc

    def beat(self, name: str) -> subprocess.Popen[bytes]:
        return self._spawn(name, ["beat", "-c", str(self.config_path)])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group: the worker and its pool children."""
        proc = self.procs[name]
        os.killpg(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)

    def cli(self, *args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SYNCWORKER, *args, "-c", str(self.config_path)], cwd=ROOT, env=self.env,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def coord(self) -> Coordinator:
        return Coordinator.from_url(self.redis_url)


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RegistryServer, Corpus]]:
    server = RegistryServer()
    try:
        yield server, seed_many(server, repos=REPOS, tags=TAGS, layers=2, shared_layers=3)
    finally:
        server.stop()


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(persistent=True)
    yield server
    server.close()


@pytest.fixture
def cluster(
    tmp_path: Path, upstream: tuple[RegistryServer, Corpus], persistent_redis: RedisServer
) -> Iterator[Cluster]:
    made = Cluster(tmp_path, upstream[0], persistent_redis.url)
    yield made
    made.stop_all()


# -- checks -------------------------------------------------------------------------------


def wait_for(what: str, ready: Callable[[], bool], timeout: float = DEADLINE) -> None:
    assert wait_until(ready, timeout=timeout, interval=0.1), f"timed out waiting for {what}"


def wait_finished(coord: Coordinator, run_id: str) -> RunStatus:
    def finished() -> bool:
        status = coord.run_status(run_id)
        return status is not None and status.state != "running"

    if not wait_until(finished, timeout=DEADLINE, interval=0.1):
        pytest.fail(f"run {run_id} did not finish: {broker_state(coord)}")
    status = coord.run_status(run_id)
    assert status is not None
    return status


def broker_state(coord: Coordinator) -> str:
    """What Redis holds, for a failure message: queues, unacknowledged messages, the walk."""
    client = coord.client
    queues = {q: client.llen(q) for q in ("syncworker.walk", "syncworker.repo")}
    unacked = [queued_args(raw) for raw in client.hvals("unacked")]
    walk = coord.current_walk(REGISTRY), coord.cursor(REGISTRY)
    runs = [(r.id, r.state, r.counters) for r in coord.runs()]
    return f"queues={queues} unacked={unacked} walk/cursor={walk} runs={runs}"


def unique_blobs(corpus: Corpus) -> set[str]:
    return set().union(*corpus.blobs.values())


def assert_store_matches(store: Path, corpus: Corpus, skopeo_sample: int = 3) -> None:
    """Every repository's index.json tags the upstream's digests; skopeo reads a sample."""
    for repo, tags in corpus.tags.items():
        index = json.loads((store / repo / "index.json").read_text())
        stored = {
            m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
            for m in index["manifests"]
            if "org.opencontainers.image.ref.name" in m.get("annotations", {})
        }
        assert stored == tags, repo
    for repo in corpus.repositories[:skopeo_sample]:
        for tag in corpus.tags[repo]:
            out = subprocess.run(["skopeo", "inspect", f"oci:{store / repo}:{tag}"],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["Digest"] == corpus.tags[repo][tag]


def layout_of(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Each repository's index.json entries (order-free) and its blob files."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    for index in root.rglob("index.json"):
        repo = index.parent
        entries = json.loads(index.read_text())["manifests"]
        blobs = sorted(str(p.relative_to(repo)) for p in (repo / "blobs").rglob("*") if p.is_file())
        found[str(repo.relative_to(root))] = (
            sorted(json.dumps(e, sort_keys=True) for e in entries),
            blobs,
        )
    return found


def assert_same_as_embedded_sync(cluster: Cluster) -> None:
    """The workers' store is the one `syncworker sync` makes from the same config."""
    config = yaml.safe_load(cluster.config_path.read_text())
    config["storage"]["rootDirectory"] = str(cluster.workdir / "embedded")
    embedded_config = cluster.workdir / "embedded.yaml"
    embedded_config.write_text(yaml.safe_dump(config))
    command = [*SYNCWORKER, "sync", "-q", "-c", str(embedded_config)]
    done = subprocess.run(command, cwd=ROOT, env=cluster.env, capture_output=True, text=True,
                          timeout=DEADLINE)  # fmt: skip
    assert done.returncode == 0, done.stderr
    ours = layout_of(cluster.store)
    assert len(ours) == REPOS and all(blobs for _, blobs in ours.values())
    assert ours == layout_of(cluster.workdir / "embedded")


def sync_repo_runs(cluster: Cluster, names: list[str]) -> dict[str, int]:
    """How many times each repository's sync_repo ran to its end, from the workers' logs."""
    counts: dict[str, int] = {}
    for name in names:
        for line in cluster.log(name).splitlines():
            if "syncworker.sync_repo(" in line and ") done in " in line:
                repo = line.split("syncworker.sync_repo(", 1)[1].split(", ")[1]
                counts[repo] = counts.get(repo, 0) + 1
    return counts


def queued_args(raw: bytes) -> list[Any]:
    """The positional arguments of a task message as kombu stores it in a Redis list (or,
    as [message, exchange, routing key], in its hash of unacknowledged messages)."""
    message = json.loads(raw)
    if isinstance(message, list):
        message = message[0]
    args: list[Any] = json.loads(base64.b64decode(message["body"]))[0]
    return args


def queued_task(raw: bytes) -> str:
    task: str = json.loads(raw)["headers"]["task"]
    return task


def trigger(cluster: Cluster, *args: str) -> tuple[str, str]:
    """`syncworker trigger` (no wait): the run id it prints, and its message."""
    done = cluster.cli("trigger", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), done.stderr


# -- tests --------------------------------------------------------------------------------


def test_walk_two_workers_each_repo_and_blob_once_and_second_trigger_noop(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    server, corpus = upstream
    blob_gets, tag_lists = server.blob_gets(), server.request_count("tags", "get")
    # No worker yet: the walk cannot move, so the next two triggers find it in progress.
    run_id, said = trigger(cluster)
    assert "started walk" in said
    # The way beat and other services trigger: by task name, no run id. It is queued behind
    # the walk's first page, so it runs while the walk is in progress.
    queued = redis.Redis.from_url(cluster.redis_url).lrange("syncworker.walk", 0, -1)
    assert [queued_task(raw) for raw in queued].count(TASK_WALK) == 1
    app = create_app(load_config(cluster.config_path))
    app.send_task(TASK_WALK, args=[REGISTRY])
    app.close()
    # A second `trigger --wait` finds the walk in progress and waits for that run.
    err_path = cluster.workdir / "second-trigger.err"
    with err_path.open("w") as err_file:
        second = subprocess.Popen(
            [*SYNCWORKER, "trigger", "--wait", "-c", str(cluster.config_path)], cwd=ROOT,
            env=cluster.env, stdout=subprocess.PIPE, stderr=err_file, text=True,
        )  # fmt: skip
    wait_for("the second trigger to attach", lambda: "already in progress" in err_path.read_text())
    cluster.worker("w1")
    cluster.worker("w2")
    out, _ = second.communicate(timeout=DEADLINE)
    assert second.returncode == 0, err_path.read_text()
    assert out.strip() == run_id

    status = cluster.coord().run_status(run_id)
    assert status is not None and status.state == "finished"
    assert (status.total, status.done, status.failures) == (REPOS, REPOS, [])
    assert status.counters["images_copied"] == REPOS * TAGS
    assert [r.id for r in cluster.coord().runs()] == [run_id]  # the no-ops started nothing
    assert sync_repo_runs(cluster, ["w1", "w2"]) == {repo: 1 for repo in corpus.repositories}
    assert server.request_count("tags", "get") - tag_lists == REPOS
    assert server.blob_gets() - blob_gets == len(unique_blobs(corpus))
    assert "this trigger is a no-op" in cluster.log("w1") + cluster.log("w2")
    assert_store_matches(cluster.store, corpus)
    assert_same_as_embedded_sync(cluster)
    shown = cluster.cli("status", run_id, "--json")
    assert json.loads(shown.stdout)["state"] == "finished"
    assert cluster.redis_url.split("@")[-1] not in shown.stdout  # nothing of the config


def test_sigkilled_worker_mid_run_then_run_completes(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    _, corpus = upstream
    cluster.worker("w1")
    cluster.worker("w2")
    coord = cluster.coord()
    run_id, _ = trigger(cluster)
    wait_for(
        "a few repositories done",
        lambda: (s := coord.run_status(run_id)) is not None and s.done >= 4,
    )
    cluster.kill("w1")
    cluster.worker("w3", wait=False)  # its replacement, as an orchestrator would start
    status = wait_finished(coord, run_id)
    assert (status.total, status.done, status.failures) == (REPOS, REPOS, [])
    assert status.state == "finished"
    assert_store_matches(cluster.store, corpus, skopeo_sample=len(corpus.repositories))


def test_walk_worker_killed_mid_walk_resumes_from_cursor(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    server, corpus = upstream
    cluster.page_size = 1  # one repository per page: 24 walk tasks, easy to interrupt
    catalog_gets = server.request_count("catalog", "get")
    cluster.worker("walker1", "-Q", "syncworker.walk")
    coord = cluster.coord()
    run_id, _ = trigger(cluster)
    wait_for(
        "the walk to pass a few pages",
        lambda: (coord.cursor(REGISTRY) or "") >= corpus.repositories[4],
    )
    os.killpg(cluster.procs["walker1"].pid, signal.SIGSTOP)  # freeze it mid-walk, then kill
    cursor = coord.cursor(REGISTRY)
    assert cursor is not None and coord.current_walk(REGISTRY) == run_id
    cluster.kill("walker1")
    cluster.worker("walker2", "-Q", "syncworker.walk")
    wait_for("the walk to end", lambda: coord.current_walk(REGISTRY) is None)

    assert "syncworker.walk_catalog" in cluster.log("walker2")
    queued = redis.Redis.from_url(cluster.redis_url).lrange("syncworker.repo", 0, -1)
    repos = sorted(queued_args(raw)[1] for raw in queued)
    assert repos == corpus.repositories  # each repository fanned out exactly once
    # One catalog request per page; the page in progress at the kill, and one the sweep may
    # have sent again while no walk worker was up, are read twice. A walk restarted from the
    # top would have read the nine pages before the kill again.
    pages = len(corpus.repositories)
    assert server.request_count("catalog", "get") - catalog_gets <= pages + 3
    status = coord.run_status(run_id)
    assert status is not None and status.total == REPOS


def test_five_identical_sync_image_requests_make_one_copy(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    server, corpus = upstream
    repo = corpus.repositories[-1]
    app = create_app(load_config(cluster.config_path))
    manifests, blobs = server.request_count("manifest", "get", "200"), server.blob_gets()
    results = [app.send_task(TASK_SYNC_IMAGE, args=[REGISTRY, repo, "t0"]) for _ in range(5)]
    # All five are queued before the worker starts: its five threads take them at once.
    cluster.worker("ondemand", "-Q", "syncworker.ondemand", "-P", "threads", "--concurrency", "5")
    outcomes = [r.get(timeout=DEADLINE) for r in results]
    app.close()
    assert all(o["failures"] == [] for o in outcomes), outcomes
    assert sum(o["copied"] for o in outcomes) == 1, outcomes
    assert server.request_count("manifest", "get", "200") - manifests == 1  # one copy
    image_blobs = len(corpus.blobs[repo]) // TAGS  # config + 2 layers of t0
    assert server.blob_gets() - blobs == image_blobs
    out = subprocess.run(["skopeo", "inspect", f"oci:{cluster.store / repo}:t0"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert json.loads(out.stdout)["Digest"] == corpus.tags[repo]["t0"]
    # The same through the command line: already there, nothing copied, exit 0.
    again = cluster.cli("trigger", "--image", f"{repo}:t0", "--wait")
    assert again.returncode == 0, again.stderr
    assert "0 copied, 1 unchanged" in again.stderr


def test_beat_fires_walks_and_only_one_beat_replica_fires(
    cluster: Cluster, upstream: tuple[RegistryServer, Corpus]
) -> None:
    cluster.write_config(pollInterval="2s")
    cluster.worker("w1", "-P", "threads", "--concurrency", "4")
    cluster.beat("beat1")
    wait_for("beat1 to hold the lock", lambda: "Sending due task" in cluster.log("beat1"))
    cluster.beat("beat2")
    coord = cluster.coord()
    wait_for("two walks fired by beat", lambda: len(coord.runs()) >= 2)
    first = coord.runs()[-1]
    assert wait_finished(coord, first.id).state == "finished"
    assert "Sending due task" not in cluster.log("beat2")  # the standby never fired


def test_redis_restarted_during_run(
    cluster: Cluster,
    upstream: tuple[RegistryServer, Corpus],
    persistent_redis: RedisServer,
) -> None:
    _, corpus = upstream
    cluster.worker("w1")
    cluster.worker("w2")
    coord = cluster.coord()
    run_id, _ = trigger(cluster)
    wait_for(
        "a few repositories done",
        lambda: (s := coord.run_status(run_id)) is not None and s.done >= 3,
    )
    persistent_redis.restart()
    status = wait_finished(coord, run_id)
    assert status.state == "finished"
    assert (status.total, status.done, status.failures) == (REPOS, REPOS, [])
    assert_store_matches(cluster.store, corpus)
