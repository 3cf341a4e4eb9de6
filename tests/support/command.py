"""A ``syncworker`` command that listens (``api``, ``serve``), in a subprocess as a
deployment runs it: on a free loopback port, logging to a file, waited for until it
answers, stopped with SIGTERM."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

from tests.support.ports import LoopbackAddress, free_port, wait_until
from tests.support.process import stop_process

__all__ = ["ROOT", "SYNCWORKER", "ListeningCommand", "StartError"]

ROOT = Path(__file__).resolve().parents[2]
SYNCWORKER = [sys.executable, "-c", "import sys; from syncworker.cli import main; sys.exit(main())"]
START_TIMEOUT = 60.0  # FastAPI, Celery and the config load in seconds on a busy 2-core box


class StartError(RuntimeError):
    """The command exited or never answered."""


class ListeningCommand(LoopbackAddress):
    """``syncworker -v ARGS --listen 127.0.0.1:PORT``; a subclass says when it answers."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        *,
        scheme: str = "http",
        port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.scheme = scheme
        self.log_path = log_path
        command = [*SYNCWORKER, "-v", *args, "--listen", self.host]
        with log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                command, cwd=ROOT, env=dict(os.environ if env is None else env), stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        if not wait_until(self.answers, timeout=START_TIMEOUT, alive=self.running):
            self.stop()
            raise StartError(f"syncworker {args[0]} did not start:\n{self.output()[-3000:]}")

    def answers(self) -> bool:
        raise NotImplementedError

    def running(self) -> bool:
        return self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """How the command exited (None while it runs; -9 when SIGKILL ended it)."""
        return self._proc.poll()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self._proc)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
