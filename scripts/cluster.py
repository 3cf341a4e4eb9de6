"""A local syncworker cluster in one command, to try what the README describes: a seeded
upstream registry on loopback, Redis, two workers, beat and the HTTP API, until Ctrl-C.

    python scripts/cluster.py [--repos 10] [--poll-interval 2m] [--redis URL] [--keep]

Redis is the one on 127.0.0.1:6379 when it answers (in a database of its own that was
empty, emptied again on exit), else a private ``redis-server``. Config, logs and the mirror
go to a temporary directory, removed on exit unless ``--keep``. Ctrl-C (or SIGTERM/SIGHUP)
stops every process it started: workers, beat and the API each run in a session of their
own, stopped as a whole group (SIGTERM, then SIGKILL), so no pool child outlives them.

Run by ``scripts/cluster.sh``, which installs what is missing first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import redis
import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.corpus import seed_many, seed_standard  # noqa: E402
from tests.support.ports import LOOPBACK, free_port, wait_until  # noqa: E402
from tests.support.redis_server import DEFAULT_PORT, RedisServer, ping  # noqa: E402
from tests.support.registry_server import RegistryServer  # noqa: E402

REGISTRY = "local"
WORKERS = ("worker-1", "worker-2")
# A Celery worker on a busy 2-core machine takes seconds to come up.
START_TIMEOUT = 120.0
# A worker's warm shutdown waits for its running task; past this the group is killed.
STOP_TIMEOUT = 20.0
# Written into the Redis database the cluster claims, so that two clusters never share one.
CLAIM_KEY = "syncworker-cluster:owner"
READY = "cluster ready"


class Stop(Exception):
    """A signal asked the cluster to stop."""


def _stop(signum: int, _: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


class Cluster:
    """What this script started, stopped in reverse order whatever happens."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stops: list[Callable[[], None]] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        with (self.work / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "syncworker", *args], cwd=self.work, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "PYTHONPATH": _python_path(), **(env or {})},
            )  # fmt: skip
        self.procs[name] = proc
        self._stops.append(lambda: _stop_group(proc))

    def on_stop(self, stop: Callable[[], None]) -> None:
        self._stops.append(stop)

    def log(self, name: str) -> str:
        return (self.work / f"{name}.log").read_text(errors="replace")

    def wait_ready(self, name: str, ready: Callable[[], bool]) -> None:
        proc = self.procs[name]
        if not wait_until(ready, timeout=START_TIMEOUT, alive=lambda: proc.poll() is None):
            tail = "\n".join(self.log(name).splitlines()[-20:])
            raise RuntimeError(f"{name} did not start; the end of its log:\n{tail}")

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # keep stopping the others
                print(f"while stopping: {type(exc).__name__}: {exc}", file=sys.stderr)


def _python_path() -> str:
    """This checkout first, so the processes run its syncworker, installed or not."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's whole group (a worker and its pool children), SIGKILL to
    what is left after STOP_TIMEOUT."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # the leader is gone: take any child that outlived it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            break


def redis_for(cluster: Cluster, url: str | None) -> tuple[str, str]:
    """A Redis URL for the cluster, and how it was chosen."""
    if url:
        return url, "given"
    if ping(LOOPBACK, DEFAULT_PORT):
        for db in range(1, 16):
            client = redis.Redis(host=LOOPBACK, port=DEFAULT_PORT, db=db)
            if client.dbsize() == 0 and client.set(CLAIM_KEY, os.getpid(), nx=True):
                cluster.on_stop(lambda client=client: _empty(client))
                how = f"database {db} of the Redis on port {DEFAULT_PORT}, emptied on exit"
                return f"redis://{LOOPBACK}:{DEFAULT_PORT}/{db}", how
            client.close()
    server = RedisServer()
    cluster.on_stop(server.close)
    return server.url, "a private redis-server, stopped on exit"


def _empty(client: redis.Redis) -> None:
    """Delete what the cluster left in the database it claimed (empty when claimed)."""
    for key in client.scan_iter(count=1000):
        client.delete(key)
    client.close()


def write_config(work: Path, upstream: str, redis_url: str, poll_interval: str) -> Path:
    config = {
        "storage": {"rootDirectory": str(work / "mirror")},
        "extensions": {"sync": {"enable": True, "registries": [{
            "name": REGISTRY, "urls": [upstream], "pollInterval": poll_interval,
            "onDemand": True, "content": [{"prefix": "**"}],
        }]}},
        # skopeo 1.9, which reads the mirror back, skips layout entries of Docker types.
        "syncworker": {"redis": redis_url, "layoutMediaTypes": "oci"},
    }  # fmt: skip
    path = work / "syncworker.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start(cluster: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    """Everything up; what the instructions need to name."""
    upstream = RegistryServer()
    cluster.on_stop(upstream.stop)
    print(f"upstream registry on {upstream.url}; seeding it...", flush=True)
    corpus = seed_standard(upstream)
    many = seed_many(upstream, repos=args.repos, tags=3, layers=2)
    redis_url, redis_how = redis_for(cluster, args.redis)
    config = write_config(cluster.work, upstream.url, redis_url, args.poll_interval)
    for name in WORKERS:
        cluster.spawn(name, ["worker", "-c", str(config), "-n", f"{name}@%h", "--concurrency", "2"])
    cluster.spawn("beat", ["beat", "-c", str(config)])
    token = secrets.token_hex(16)
    api = f"http://{LOOPBACK}:{free_port()}"
    cluster.spawn("api", ["api", "-c", str(config), "--listen", api.removeprefix("http://")],
                  env={"SYNCWORKER_API_TOKEN": token})  # fmt: skip
    for name in WORKERS:
        cluster.wait_ready(name, lambda name=name: " ready." in cluster.log(name))
    cluster.wait_ready("api", lambda: _healthy(api))
    repos = len(corpus.repositories) + len(many.repositories)
    return {"upstream": upstream.url, "repos": repos, "redis": redis_url,
            "redis_how": redis_how, "config": config, "api": api, "token": token}  # fmt: skip


def _healthy(api: str) -> bool:
    try:
        return requests.get(f"{api}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def instructions(work: Path, keep: bool, up: dict[str, Any], poll_interval: str) -> str:
    sw = "syncworker"
    if not shutil.which("syncworker"):  # not installed: this checkout, as the processes run it
        sw = f"PYTHONPATH={_python_path()} {sys.executable} -m syncworker"
    config, api = up["config"], up["api"]
    request = '{"registry": "%s", "repo": "library/busybox", "reference": "1.36", "wait": 30}'
    auth = '-H "Authorization: Bearer $SYNCWORKER_API_TOKEN"'
    files = "kept" if keep else "removed"
    return f"""
{READY}: every process below stops on Ctrl-C; the files in {work} are then {files}.
  upstream  {up["upstream"]}  registry {REGISTRY!r}: {up["repos"]} repositories, seeded
  redis     {up["redis"]}  ({up["redis_how"]})
  workers   {", ".join(WORKERS)}, 2 pool processes each   logs: {work}/worker-*.log
  beat      walks {REGISTRY!r} every {poll_interval} (pollInterval)   log: {work}/beat.log
  api       {api}   log: {work}/api.log
  config    {config}   mirror: {work}/mirror

Try, in another shell:
  {sw} status -c {config} --watch      # runs, workers, queues, next scheduled walk
  {sw} trigger -c {config} --wait      # walk the whole upstream now; exit 0 = no failures
  {sw} trigger -c {config} --image library/alpine:3.20 --wait   # one image, on demand
  export SYNCWORKER_API_TOKEN={up["token"]}
  curl -s {auth} -H 'Content-Type: application/json' -d '{request % REGISTRY}' {api}/v1/sync
  curl -s {auth} {api}/v1/sync/<task_id>   # how a request ended
  curl -s {auth} {api}/v1/runs
  skopeo inspect oci:{work}/mirror/library/alpine:3.20
Beat starts a walk of {REGISTRY!r} every {poll_interval}, the first within {poll_interval} of its
start: `status --watch` shows each scheduled run as it starts and ends.
""".strip("\n")


def supervise(cluster: Cluster) -> None:
    """Until a signal: say when a process exits by itself (its log names the cause)."""
    reported: set[str] = set()
    while True:
        for name, proc in cluster.procs.items():
            if proc.poll() is not None and name not in reported:
                reported.add(name)
                log = cluster.work / f"{name}.log"
                print(f"{name} exited with status {proc.returncode}; see {log}. The rest"
                      " keeps running.", file=sys.stderr, flush=True)  # fmt: skip
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=10, help="generated repositories")
    parser.add_argument("--poll-interval", default="2m", help="beat's walk interval")
    parser.add_argument("--redis", help="Redis URL (default: 6379 if it answers, else private)")
    parser.add_argument("--keep", action="store_true", help="keep config, logs and mirror")
    args = parser.parse_args()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    work = Path(tempfile.mkdtemp(prefix="syncworker-cluster-"))
    cluster = Cluster(work)
    code = 0
    try:
        up = start(cluster, args)
        print(instructions(work, args.keep, up, args.poll_interval), flush=True)
        supervise(cluster)
    except Stop as stop:
        print(f"\n{stop}: stopping every process...", file=sys.stderr, flush=True)
    except (RuntimeError, OSError) as exc:  # a part that did not start; the log tail says why
        print(f"cluster.py: {exc}", file=sys.stderr)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        cluster.stop()
        if args.keep:
            print(f"stopped; config, logs and mirror kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
            print(f"stopped; removed {work}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
