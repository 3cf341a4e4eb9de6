"""A real Redis for tests: the machine's 127.0.0.1:6379 when it answers, else our own.

`shared_redis_url()` reuses a running Redis (tests must then use their own key prefix or
database, never FLUSHALL); each pytest-xdist worker gets a database of its own there, so
what is global within a database (kombu's queues and unacknowledged-message hashes) is not
shared between workers. `RedisServer()` starts a private `redis-server` on a free port,
without persistence, for tests that stop, kill or restart Redis.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import LOOPBACK, free_port, wait_until
from tests.support.process import stop_process

__all__ = [
    "DEFAULT_PORT",
    "RedisServer",
    "RedisStartError",
    "ping",
    "shared_redis_url",
    "worker_database",
]

DEFAULT_PORT = 6379
START_TIMEOUT = 20.0
# Redis's default `databases 16`; workers past that share one, by their number modulo this.
DATABASES = 16


class RedisStartError(RuntimeError):
    """redis-server is missing or did not answer PING."""


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Redis answers PING at host:port (raw RESP: no client library involved)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A private redis-server on 127.0.0.1 and a free port; no RDB/AOF files unless
    ``persistent``: then an append-only file synced on every write, so a restart loses
    neither queues nor run state, as with a production Redis."""

    def __init__(self, binary: str = "redis-server", *, persistent: bool = False) -> None:
        path = shutil.which(binary)
        if path is None:
            raise RedisStartError(f"{binary} not found: install Debian's redis-server")
        self._binary = path
        self._persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if persistent
            else ["--appendonly", "no"]
        )
        self.workdir = Path(tempfile.mkdtemp(prefix="redis-"))
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def __repr__(self) -> str:
        return f"RedisServer({self.url})"

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start on this server's port (again, after stop() or kill())."""
        if self.running():
            return
        args = [
            self._binary,
            "--bind", LOOPBACK,
            "--port", str(self.port),
            "--save", "",
            *self._persistence,
            "--dir", str(self.workdir),
        ]  # fmt: skip
        log = (self.workdir / "redis.log").open("ab")
        with log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        if not wait_until(
            lambda: ping(LOOPBACK, self.port), timeout=START_TIMEOUT, alive=self.running
        ):
            self.kill()
            raise RedisStartError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        self._terminate(signal.SIGTERM)

    def kill(self) -> None:
        self._terminate(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove the working directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _terminate(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, sig)


def worker_database() -> int:
    """This pytest-xdist worker's database (``gw3`` -> 3); 0 outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw")) % DATABASES


def shared_redis_url() -> tuple[str, RedisServer | None]:
    """URL of a Redis to share: 127.0.0.1:6379 if it answers, else a started private one
    (returned too, so the caller closes it); in this worker's database either way."""
    if ping(LOOPBACK, DEFAULT_PORT):
        return f"redis://{LOOPBACK}:{DEFAULT_PORT}/{worker_database()}", None
    server = RedisServer()
    return server.url.removesuffix("/0") + f"/{worker_database()}", server
