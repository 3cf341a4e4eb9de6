"""`syncworker api` in a subprocess on a loopback port, for the tests and the benchmark."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import requests

from tests.support.command import ListeningCommand

__all__ = ["ApiServer"]


class ApiServer(ListeningCommand):
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
        self.verify: bool | str = str(tls[2]) if tls else True
        self.client_cert = (str(client_cert[0]), str(client_cert[1])) if client_cert else None
        environment = {k: v for k, v in (env or os.environ).items() if k != "SYNCWORKER_API_TOKEN"}
        if token is not None:
            environment["SYNCWORKER_API_TOKEN"] = token
        args = ["api", "-c", str(config)]
        if tls:
            args += ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])]
        if tls and client_cert:
            args += ["--ssl-ca-certs", str(tls[2])]
        super().__init__(
            args, log_path, scheme="https" if tls else "http", port=port, env=environment
        )

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

    def answers(self) -> bool:
        try:
            answer = requests.get(self.url + "/healthz", timeout=2, verify=self.verify,
                                  cert=self.client_cert)  # fmt: skip
            return answer.status_code == 200
        except requests.RequestException:
            return False
