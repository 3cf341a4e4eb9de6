"""`syncworker api` in a subprocess on a loopback port, for the tests and the benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from tests.support.ports import LOOPBACK, free_port, wait_until
from tests.support.process import stop_process

__all__ = ["ApiServer", "ApiStartError"]

ROOT = Path(__file__).resolve().parents[2]
SYNCWORKER = [sys.executable, "-c", "import sys; from syncworker.cli import main; sys.exit(main())"]
START_TIMEOUT = 60.0  # FastAPI, Celery and the config load in seconds on a busy 2-core box


class ApiStartError(RuntimeError):
    """The api process exited or never answered /healthz."""


class ApiServer:
    """``syncworker -v api -c CONFIG --listen 127.0.0.1:PORT`` with ``token`` in
    ``SYNCWORKER_API_TOKEN`` (none: the config's), logging to ``log_path``."""

    def __init__(
        self,
        config: Path,
        log_path: Path,
        *,
        token: str | None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        tls: tuple[Path, Path, Path] | None = None,
        client_cert: tuple[Path, Path] | None = None,
    ) -> None:
        """``tls``: (certificate, key, CA that signed it): serve HTTPS, trusted via the CA;
        ``client_cert`` (certificate, key, signed by that CA): require and send it."""
        self.port = port or free_port()
        self.log_path = log_path
        self.scheme = "https" if tls else "http"
        self.verify: bool | str = str(tls[2]) if tls else True
        environment = {k: v for k, v in (env or os.environ).items() if k != "SYNCWORKER_API_TOKEN"}
        if token is not None:
            environment["SYNCWORKER_API_TOKEN"] = token
        command = [*SYNCWORKER, "-v", "api", "-c", str(config), "--listen", self.host]
        if tls:
            command += ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])]
        if tls and client_cert:
            command += ["--ssl-ca-certs", str(tls[2])]
        self.client_cert = (str(client_cert[0]), str(client_cert[1])) if client_cert else None
        with log_path.open("ab") as log:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        if not wait_until(self._healthy, timeout=START_TIMEOUT, alive=self.running):
            self.stop()
            raise ApiStartError(f"syncworker api did not start:\n{self.log()[-3000:]}")

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """One request, with ``Authorization: Bearer token`` when ``token`` is given."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", 30)
        return requests.request(
            method, self.url + path, headers=headers, verify=self.verify,
            cert=self.client_cert, **kwargs,
        )  # fmt: skip

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc)

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _healthy(self) -> bool:
        try:
            answer = requests.get(self.url + "/healthz", timeout=2, verify=self.verify,
                                  cert=self.client_cert)  # fmt: skip
            return answer.status_code == 200
        except requests.RequestException:
            return False
