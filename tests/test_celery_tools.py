"""Workers as Celery's tools see them: real `syncworker worker` processes on one host and a
private real Redis. Two workers started alike are two nodes (each its own default name,
no DuplicateNodenameWarning, both in `status --watch`); `-n` still names one; `syncworker
inspect` and `celery -A syncworker.celeryapp` (with the config named) reach them all from
a shell that has nothing else set. `trigger --wait` with no worker says so once, without
the broker's password, and goes on waiting for one."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from syncworker.cli.workerping import warn_if_none_answers
from tests.support.cluster import DEADLINE, ROOT, SYNCWORKER, Cluster, NoUpstream, wait_for
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer
from tests.test_obs_status import watching

pytestmark = pytest.mark.slow

DUPLICATE = "DuplicateNodenameWarning"
NO_WORKER = "no syncworker worker answers on "


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two workers started with no name, one named with -n; all three ready."""
    with RedisServer() as redis_server:
        made = Cluster(tmp_path_factory.mktemp("tools"), NoUpstream(), redis_server.url)
        try:
            for name in ("w1", "w2"):
                made.worker(name, "-P", "threads", named=False, wait=False)
            made.worker("named", "-P", "threads", "-n", "custom@%h", wait=False)
            for name in made.procs:
                made.worker_ready(name)
            yield made
        finally:
            made.stop_all()


def nodes(cluster: Cluster) -> dict[str, str]:
    """Each worker's node name as it logged it ready."""
    names = {}
    for name in cluster.procs:
        ready = next(line for line in cluster.log(name).splitlines() if line.endswith(" ready."))
        names[name] = ready.split("] ", 1)[1].removesuffix(" ready.")
    return names


def test_two_workers_on_one_host_are_two_nodes(cluster: Cluster) -> None:
    host = socket.gethostname()
    names = nodes(cluster)
    for name in ("w1", "w2"):
        assert names[name] == f"syncworker-{cluster.procs[name].pid}@{host}"
    assert names["named"] == f"custom@{host}"
    with watching(cluster, "--json") as lines:
        shown = json.loads(next(lines))["workers"]
    assert sorted(shown) == sorted(names.values())
    for name in cluster.procs:
        assert DUPLICATE not in cluster.log(name)


def test_inspect_reaches_every_worker_from_a_bare_shell(cluster: Cluster) -> None:
    done = cluster.cli("inspect", "active")
    assert done.returncode == 0, done.stderr
    for node in nodes(cluster).values():
        assert f"->  {node}: OK" in done.stdout
    assert DUPLICATE not in done.stderr
    one = nodes(cluster)["w1"]
    only = cluster.cli("inspect", "ping", "-d", one)
    assert only.returncode == 0 and "1 node online." in only.stdout, only.stderr
    nobody = cluster.cli("inspect", "ping", "-d", "nobody@nowhere", "-t", "1")
    assert nobody.returncode != 0
    assert nobody.stderr.strip() == "syncworker: No nodes replied within time constraint"


def test_celery_command_line_with_the_config_named(cluster: Cluster) -> None:
    command = [sys.executable, "-m", "celery", "-A", "syncworker.celeryapp", "inspect", "ping"]

    def celery(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, cwd=ROOT, env={**cluster.env, **env},
                              capture_output=True, text=True, timeout=DEADLINE)  # fmt: skip

    done = celery(SYNCWORKER_CONFIG=str(cluster.config_path))
    assert done.returncode == 0, done.stderr
    assert "3 nodes online." in done.stdout
    bare = celery()
    assert bare.returncode != 0
    assert "SYNCWORKER_CONFIG: not set" in bare.stderr
    assert "syncworker inspect -c FILE" in bare.stderr


def test_trigger_wait_says_once_that_no_worker_answers_then_waits_for_one(
    tmp_path: Path, registry: RegistryServer
) -> None:
    password = secrets.token_hex(8)
    with RedisServer() as redis_server:
        redis.Redis(port=redis_server.port).config_set("requirepass", password)
        broker = f"redis://:***@127.0.0.1:{redis_server.port}/0"
        idle = Cluster(tmp_path, registry, broker.replace("***", password))
        err = tmp_path / "trigger.err"
        with err.open("w") as err_file:
            waiting = subprocess.Popen(
                [*SYNCWORKER, "trigger", "--wait", "-c", str(idle.config_path)], cwd=ROOT,
                env=idle.env, stdout=subprocess.DEVNULL, stderr=err_file,
            )  # fmt: skip
        try:
            wait_for("the no-worker line", lambda: NO_WORKER in err.read_text())
            assert waiting.poll() is None, err.read_text()  # still waiting
            idle.worker("late", "-P", "threads")
            assert waiting.wait(timeout=DEADLINE) == 0, err.read_text()  # the late worker walked
        finally:
            waiting.kill()
            waiting.wait()
            idle.stop_all()
    shown = err.read_text()
    assert shown.count(NO_WORKER) == 1, shown
    assert f"{NO_WORKER}{broker}: the run waits for one" in shown
    assert f"`syncworker worker -c {idle.config_path}`" in shown
    assert password not in shown


def test_a_broker_that_fails_the_ping_leaves_the_hint_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The no-worker hint is only a hint: a broker that cannot be asked (here a closed
    port; in the chaos test, Redis restarting under `trigger --wait`) fails nothing, and
    the wait that follows meets the broker's state itself."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    warn_if_none_answers(Celery(broker=f"redis://127.0.0.1:{port}/0"), "c.yaml")
    assert "no syncworker worker answers" not in capsys.readouterr().err
