"""``syncworker serve`` in a subprocess, as a deployment runs it: the real command on a
free loopback port, stopped with SIGTERM.

    with ServeProcess(config_path) as serve:
        requests.get(f"{serve.url}/v2/")
"""

from __future__ import annotations

import ssl
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.command import ListeningCommand

__all__ = ["ServeProcess"]


class ServeProcess(ListeningCommand):
    def __init__(self, config: Path, *, tls: bool = False, extra: tuple[str, ...] = ()) -> None:
        log = Path(tempfile.mkstemp(prefix="serve-", suffix=".log")[1])
        super().__init__(
            ["serve", "-c", str(config), *extra], log, scheme="https" if tls else "http"
        )

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.log_path.unlink(missing_ok=True)

    def answers(self) -> bool:
        context = ssl._create_unverified_context() if self.scheme == "https" else None
        try:
            urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=context).close()
        except urllib.error.HTTPError:
            return True  # 401 without credentials: it is up
        except OSError:
            return False
        return True
