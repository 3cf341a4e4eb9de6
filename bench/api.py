"""`python -m bench.api`: push-to-mirrored latency through registry notifications, and the
requests per second one `syncworker api` process accepts. Loopback only, bounded loops.

Latency: a distribution registry notifies the API, one `syncworker worker` (prefork, one
child, as the tests run it) mirrors; for each of PUSHES new images, the time from the
manifest PUT's answer to the tag's entry in the store's index.json (polled every POLL s).

Throughput: with the worker stopped, CLIENTS threads with keep-alive connections POST
REQUESTS notifications each, (a) all distinct pushes (each one sends a task to the broker),
(b) one identical push (answered from the coalescing key), (c) GET /healthz for the bare
server. The client runs on the same cores as the API: the figures are a lower bound.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml

from tests.support.api_server import ApiServer
from tests.support.command import ROOT, SYNCWORKER
from tests.support.images import make_image
from tests.support.ports import LOOPBACK, free_port, wait_until
from tests.support.process import stop_process
from tests.support.push import push_image
from tests.support.redis_server import RedisServer
from tests.support.registry_server import RegistryServer

PUSHES = 10
POLL = 0.01
DEADLINE = 120.0
CLIENTS = 8
REQUESTS = 250  # per client
DIGEST = "sha256:" + "5a" * 32


def _config(workdir: Path, upstream: RegistryServer, redis_url: str) -> Path:
    config = {
        "storage": {"rootDirectory": str(workdir / "store")},
        "extensions": {"sync": {"registries": [{"urls": [upstream.url], "name": "up"}]}},
        "syncworker": {"redis": redis_url},
    }
    path = workdir / "mirror.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def _worker(config: Path, workdir: Path) -> Iterator[None]:
    log_path = workdir / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWORKER_")}
    command = [*SYNCWORKER, "worker", "-c", str(config), "--concurrency", "1", "-P", "prefork",
               "--without-mingle", "--without-gossip"]  # fmt: skip
    with log_path.open("ab") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        ready = wait_until(lambda: " ready." in log_path.read_text(), timeout=DEADLINE,
                           alive=lambda: proc.poll() is None)  # fmt: skip
        if not ready:
            raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-2000:]}")
        yield
    finally:
        stop_process(proc)


def _stored(store: Path, repo: str, tag: str, digest: str) -> bool:
    index = store / repo / "index.json"
    try:
        entries = json.loads(index.read_text())["manifests"]
    except (OSError, ValueError):
        return False  # not there yet, or being replaced
    name = "org.opencontainers.image.ref.name"
    return any(e.get("annotations", {}).get(name) == tag and e["digest"] == digest for e in entries)


def measure_latency(upstream: RegistryServer, store: Path) -> list[float]:
    latencies = []
    for i in range(PUSHES):
        digest = push_image(
            upstream.url, "bench/app", f"t{i}", make_image(seed=f"bench-{i}")
        ).digest
        pushed = time.monotonic()
        if not wait_until(lambda: _stored(store, "bench/app", f"t{i}", digest),  # noqa: B023
                          timeout=DEADLINE, interval=POLL):  # fmt: skip
            raise RuntimeError(f"bench/app:t{i} was not mirrored within {DEADLINE}s")
        latencies.append(time.monotonic() - pushed)
    return latencies


def _envelope(upstream_host: str, tag: str, digest: str) -> bytes:
    target = {"repository": "bench/app", "tag": tag, "digest": digest,
              "url": f"http://{upstream_host}/v2/bench/app/manifests/{digest}"}  # fmt: skip
    event = {"id": tag, "action": "push", "target": target, "request": {"host": upstream_host}}
    return json.dumps({"events": [event]}).encode()


def _hammer(
    api: ApiServer, token: str, request: Callable[[int, int], tuple[str, str, bytes]]
) -> float:
    """CLIENTS threads × REQUESTS requests; requests per second (every answer checked)."""
    failures: list[str] = []

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(LOOPBACK, api.port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        try:
            for i in range(REQUESTS):
                method, path, body = request(n, i)
                conn.request(method, path, body=body or None, headers=headers)
                answer = conn.getresponse()
                answer.read()
                if answer.status not in (200, 202):
                    failures.append(f"{path}: {answer.status}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[:3]}")
    return CLIENTS * REQUESTS / elapsed


def measure_throughput(api: ApiServer, token: str, upstream_host: str) -> dict[str, float]:
    hook = "/v1/webhooks/distribution"

    def distinct(n: int, i: int) -> tuple[str, str, bytes]:
        digest = "sha256:" + f"{n:04d}{i:060d}"
        return "POST", hook, _envelope(upstream_host, f"c{n}-{i}", digest)

    identical_body = _envelope(upstream_host, "same", DIGEST)
    return {
        "distinct pushes (one task sent each)": _hammer(api, token, distinct),
        "identical pushes (coalesced)": _hammer(
            api, token, lambda n, i: ("POST", hook, identical_body)
        ),
        "GET /healthz": _hammer(api, token, lambda n, i: ("GET", "/healthz", b"")),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__)
    parser.parse_args()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-api-")))
        redis_server = RedisServer()
        stack.callback(redis_server.close)
        token, api_port = secrets.token_hex(16), free_port()
        endpoint = {"name": "api", "url": f"http://{LOOPBACK}:{api_port}/v1/webhooks/distribution",
                    "headers": {"Authorization": [f"Bearer {token}"]}, "timeout": "5s"}  # fmt: skip
        upstream = RegistryServer(notifications=[endpoint])
        stack.callback(upstream.stop)
        config = _config(workdir, upstream, redis_server.url)
        api = ApiServer(config, workdir / "api.log", token=token, port=api_port)
        stack.callback(api.stop)
        with _worker(config, workdir):
            latencies = measure_latency(upstream, workdir / "store")
        rates = measure_throughput(api, token, upstream.host)
    _report(latencies, rates)
    return 0


def _report(latencies: list[float], rates: dict[str, float]) -> None:
    print(f"push-to-mirrored latency over {len(latencies)} pushes (s): "
          f"median {statistics.median(latencies):.2f}, min {min(latencies):.2f}, "
          f"max {max(latencies):.2f}")  # fmt: skip
    print("  each:", ", ".join(f"{x:.2f}" for x in latencies))
    print(f"one api process, {CLIENTS} keep-alive clients x {REQUESTS} requests:")
    for name, rate in rates.items():
        print(f"  {name}: {rate:.0f} requests/s")
    print(f"machine: {os.cpu_count()} cores, load {Path('/proc/loadavg').read_text().split()[0]}")


if __name__ == "__main__":
    sys.exit(main())
