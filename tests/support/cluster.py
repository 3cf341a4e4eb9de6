"""A Celery cluster for end-to-end tests: a private Redis, `syncworker worker` and `beat`
processes started and killed by name, the shared upstream fixture, and the checks the
Celery tests share (waiting for a run, what the broker holds, what the store holds).

Every wait polls with a deadline (DEADLINE) and never asserts on elapsed time.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from syncworker.coord import Coordinator, RunStatus
from tests.support.corpus import Corpus, seed_many
from tests.support.ports import wait_until
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

__all__ = [
    "Cluster",
    "DEADLINE",
    "NoUpstream",
    "FAST_RESTORE",
    "PAGE_SIZE",
    "REGISTRY",
    "REPOS",
    "ROOT",
    "SWEEP_SECONDS",
    "SYNCWORKER",
    "TAGS",
    "Upstream",
    "VISIBILITY_TIMEOUT",
    "assert_same_as_embedded_sync",
    "assert_store_matches",
    "broker_state",
    "cluster",
    "layout_of",
    "persistent_redis",
    "queued_args",
    "queued_repos",
    "queued_task",
    "seeded_upstream",
    "sync_repo_runs",
    "trigger",
    "unique_blobs",
    "upstream",
    "wait_finished",
    "wait_for",
]

ROOT = Path(__file__).resolve().parent.parent.parent
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
class NoUpstream:
    """The upstream of a cluster whose processes never call it (beat, idle workers)."""

    url: str = "http://127.0.0.1:9"


@dataclass
class Cluster:
    """A config file and the worker/beat processes started on it."""

    workdir: Path
    upstream: Upstream
    redis_url: str
    page_size: int = PAGE_SIZE
    sweep_seconds: float = SWEEP_SECONDS
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Where the workers reach the upstream, when not at its own address (a proxy).
    upstream_url: str = ""
    # More of the config's `syncworker` section, e.g. {"tagConcurrency": 1}.
    settings: dict[str, Any] = field(default_factory=dict)
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
                {"urls": [self.upstream_url or self.upstream.url], "name": REGISTRY,
                 **registry}
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
                **self.settings,
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

    def worker(
        self, name: str, *options: str, wait: bool = True, named: bool = True
    ) -> subprocess.Popen[bytes]:
        """`syncworker worker` with one prefork child unless ``options`` say otherwise, its
        node named ``name@<host>`` unless not ``named`` (then with mingle and gossip on)."""
        defaults = ["--concurrency", "1", "-P", "prefork"] if "-P" not in options else []
        naming = ["-n", f"{name}@%h", "--without-mingle", "--without-gossip"] if named else []
        args = ["worker", "-c", str(self.config_path), *naming, *defaults, *options]
        proc = self._spawn(name, args)
        if wait:
            self.worker_ready(name)
        return proc

    def worker_ready(self, name: str) -> None:
        proc = self.procs[name]
        ready = wait_until(lambda: " ready." in self.log(name), timeout=DEADLINE,
                           alive=lambda: proc.poll() is None)  # fmt: skip
        assert ready, f"worker {name} did not start:\n{self.log(name)[-3000:]}"

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


def seeded_upstream(repos: int, tags: int, **shape: int) -> Iterator[tuple[RegistryServer, Corpus]]:
    """A registry holding ``repos`` repositories of ``tags`` tags that share some layers
    (``shape``: the other sizes of ``seed_many``, two layers of which three are shared
    unless it says otherwise), for a module-scoped fixture (``yield from``); stopped when
    the module is done."""
    server = RegistryServer()
    shape = {"layers": 2, "shared_layers": 3, **shape}
    try:
        yield server, seed_many(server, repos=repos, tags=tags, **shape)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[RegistryServer, Corpus]]:
    yield from seeded_upstream(REPOS, TAGS)


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


def sync_repo_runs(
    cluster: Cluster, names: list[str], awaiting: Collection[str] = ()
) -> dict[str, int]:
    """How many times each repository's sync_repo ran to its end, from the workers' logs,
    once each of ``awaiting`` has a line: a run reads as finished when its last count lands,
    a moment before that repository's "done in" line is written."""
    if awaiting:
        wait_for("the done lines", lambda: _done_lines(cluster, names).keys() >= set(awaiting))
    return _done_lines(cluster, names)


def _done_lines(cluster: Cluster, names: list[str]) -> dict[str, int]:
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


def queued_repos(raw: bytes) -> list[str]:
    """The repositories a ``sync_repo`` or ``sync_repos`` message in a Redis list carries."""
    repos = queued_args(raw)[1]
    return repos if isinstance(repos, list) else [repos]


def queued_task(raw: bytes) -> str:
    task: str = json.loads(raw)["headers"]["task"]
    return task


def trigger(cluster: Cluster, *args: str) -> tuple[str, str]:
    """`syncworker trigger` (no wait): the run id it prints, and its message."""
    done = cluster.cli("trigger", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), done.stderr
