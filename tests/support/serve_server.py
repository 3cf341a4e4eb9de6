"""``syncworker serve`` in a subprocess, as a deployment runs it: the real command on a
free loopback port, stopped with SIGTERM.

    with ServeProcess(config_path) as serve:
        requests.get(f"{serve.url}/v2/")
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.ports import LOOPBACK, free_port, wait_until
from tests.support.process import stop_process

__all__ = ["ServeProcess"]

START_TIMEOUT = 60.0  # seconds: imports on a loaded 2-core box


class ServeProcess:
    def __init__(self, config: Path, *, tls: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.scheme = "https" if tls else "http"
        self.log = Path(tempfile.mkstemp(prefix="serve-", suffix=".log")[1])
        args = [sys.executable, "-m", "syncworker", "-v", "serve", "-c", str(config)]
        args += ["--listen", f"{LOOPBACK}:{self.port}", *extra]
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(os.environ),
            )  # fmt: skip
        if not wait_until(self._answers, timeout=START_TIMEOUT, alive=self.running):
            self.stop()
            raise RuntimeError(f"syncworker serve did not start:\n{self.output()}")

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def running(self) -> bool:
        return self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """How the command exited (None while it runs; -9 when SIGKILL ended it)."""
        return self._proc.poll()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self._proc)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)

    def _answers(self) -> bool:
        context = ssl._create_unverified_context() if self.scheme == "https" else None
        try:
            urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=context).close()
        except urllib.error.HTTPError:
            return True  # 401 without credentials: it is up
        except OSError:
            return False
        return True
