"""A real CNCF distribution 2.8 registry (`/usr/bin/docker-registry`) in a subprocess.

Every server gets its own generated `config.yml` (never Debian's default
`/etc/docker/registry/config.yml`, which turns on htpasswd auth), its own filesystem storage
and two free loopback ports: the API and the debug server, whose `/metrics` is Prometheus
text. `REGISTRY_*` environment variables are removed, because distribution lets them
override any config key.

Prometheus `registry_http_requests_total` labels seen on distribution 2.8.2 (verified by
`tests/test_support_registry.py::test_handler_labels`):

    handler: base (GET /v2/), catalog, tags, manifest, blob, blob_upload (POST .../uploads/),
             blob_upload_chunk (PUT/PATCH/GET/DELETE .../uploads/<uuid>)
    method:  lower case, e.g. "get", "head", "put"
    code:    the status as a string, e.g. "200", "404"
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from tests.support.ports import LOOPBACK, LoopbackAddress, free_port, wait_until
from tests.support.process import stop_process

__all__ = [
    "REGISTRY_BINARY",
    "MetricKey",
    "RegistryServer",
    "RegistryStartError",
    "TokenAuthConfig",
    "fast_tmp_dir",
    "parse_request_counters",
]

REGISTRY_BINARY = "/usr/bin/docker-registry"
# The Go binary starts in well under a second; a loaded 2-core CI box gets generous headroom.
START_TIMEOUT = 30.0
# A bind race on a port picked by free_port() is retried this many times on fresh ports.
START_ATTEMPTS = 3
_COUNTER = "registry_http_requests_total"


def fast_tmp_dir() -> str | None:
    """/dev/shm when writable: the registry's filesystem driver is ~8x faster on tmpfs than
    on a virtual disk (measured: blob POST+PUT 8 ms vs 70 ms). None: the system default."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class RegistryStartError(RuntimeError):
    """The registry binary is missing or the server did not come up."""


class TokenAuthConfig(Protocol):
    """What distribution's `auth.token` section needs (see tests/support/token_issuer.py)."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


@dataclass(frozen=True)
class MetricKey:
    """Labels of one `registry_http_requests_total` series."""

    handler: str
    method: str
    code: str


def parse_request_counters(text: str) -> dict[MetricKey, float]:
    """Counters of `registry_http_requests_total` from Prometheus text exposition format."""
    counters: dict[MetricKey, float] = {}
    for line in text.splitlines():
        if not line.startswith(_COUNTER + "{"):
            continue
        labels_text, _, value = line[len(_COUNTER) + 1 :].rpartition("} ")
        labels = dict(_parse_label(item) for item in labels_text.split(",") if item)
        key = MetricKey(labels.get("handler", ""), labels.get("method", ""), labels.get("code", ""))
        counters[key] = float(value)
    return counters


def _unverified_context() -> ssl.SSLContext:
    """For the readiness probe only: the server's certificate is checked by the tests."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _parse_label(item: str) -> tuple[str, str]:
    name, _, quoted = item.partition("=")
    return name.strip(), quoted.strip().strip('"')


class RegistryServer(LoopbackAddress):
    """One distribution 2.8 registry on 127.0.0.1, started on construction.

    Options: `htpasswd=(user, password)` for basic auth, `token_auth=` an object with
    realm/service/issuer/rootcertbundle (a TokenIssuer) for bearer auth, `tls=(certfile,
    keyfile)` to serve HTTPS, plus `client_ca=` a CA file to require client certificates
    signed by it (mutual TLS), `notifications=` a list of distribution
    `notifications.endpoints` entries (name, url, headers, timeout, threshold, backoff,
    ignoredmediatypes), `proxy=` a registry URL to pull through (distribution's proxy
    mode). `workdir` holds config, storage and the log (a fresh temporary
    directory when omitted, removed by `stop()`).
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        htpasswd: tuple[str, str] | None = None,
        token_auth: TokenAuthConfig | None = None,
        tls: tuple[Path | str, Path | str] | None = None,
        client_ca: Path | str | None = None,
        notifications: list[Mapping[str, Any]] | None = None,
        proxy: str | None = None,
        binary: str = REGISTRY_BINARY,
    ) -> None:
        if not Path(binary).is_file():
            raise RegistryStartError(
                f"{binary} not found: install Debian's docker-registry (scripts/test.sh does)"
            )
        self._owns_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="registry-", dir=fast_tmp_dir()))
        self.storage_dir = self.workdir / "storage"
        self.log_path = self.workdir / "registry.log"
        self._binary = binary
        self._htpasswd = htpasswd
        self._token_auth = token_auth
        self._tls = (Path(tls[0]), Path(tls[1])) if tls else None
        self._client_ca = Path(client_ca) if client_ca else None
        self._notifications = notifications
        self._proxy = proxy
        if self._client_ca and not self._tls:
            raise ValueError("client_ca needs tls")
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.debug_port = 0
        self._start_on_fresh_ports()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self._tls else "http"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.debug_port}/metrics"

    def __repr__(self) -> str:
        return f"RegistryServer({self.url}, workdir={str(self.workdir)!r})"

    # -- metrics -----------------------------------------------------------------------------

    def metrics(self) -> dict[MetricKey, float]:
        """`registry_http_requests_total` counters keyed by (handler, method, code)."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return parse_request_counters(response.read().decode())

    def request_count(
        self, handler: str | None = None, method: str | None = None, code: str | None = None
    ) -> int:
        """Requests served so far, filtered by handler label, HTTP method and status code."""
        wanted_method = method.lower() if method else None
        return int(
            sum(
                value
                for key, value in self.metrics().items()
                if (handler is None or key.handler == handler)
                and (wanted_method is None or key.method == wanted_method)
                and (code is None or key.code == str(code))
            )
        )

    def blob_gets(self) -> int:
        """GET requests on blobs (any status): what a mirror must not repeat."""
        return self.request_count(handler="blob", method="get")

    def notification_metrics(self, endpoint: str) -> dict[str, Any]:
        """What distribution counts for notification endpoint ``endpoint`` (expvar on the
        debug server): Pending, Events, Successes, Failures, Errors and Statuses, the last
        keyed by status line, e.g. ``{"401 Unauthorized": 3}``."""
        url = f"http://{LOOPBACK}:{self.debug_port}/debug/vars"
        with urllib.request.urlopen(url, timeout=10) as response:
            data = json.loads(response.read())
        for entry in data["registry"]["notifications"]["endpoints"]:
            if entry["name"] == endpoint:
                metrics: dict[str, Any] = entry["Metrics"]
                return metrics
        raise KeyError(f"no notification endpoint {endpoint!r}")

    # -- lifecycle ---------------------------------------------------------------------------

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop gracefully (SIGTERM) and remove a temporary workdir."""
        self._terminate(signal.SIGTERM)
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the server; storage stays so `restart()` serves the same content."""
        self._terminate(signal.SIGKILL)

    def restart(self) -> None:
        """Stop (if running) and start again on the same ports with the same storage."""
        self._terminate(signal.SIGTERM)
        self._start(self.port, self.debug_port)

    def __enter__(self) -> RegistryServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _terminate(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, sig)

    def _start_on_fresh_ports(self) -> None:
        for attempt in range(START_ATTEMPTS):
            try:
                self._start(free_port(), free_port())
                return
            except RegistryStartError:
                if attempt == START_ATTEMPTS - 1:
                    self.stop()
                    raise

    def _start(self, port: int, debug_port: int) -> None:
        self.port, self.debug_port = port, debug_port
        config_path = self.workdir / "config.yml"
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path.write_text(yaml.safe_dump(self._config()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [self._binary, "serve", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        if not wait_until(self._answers, timeout=START_TIMEOUT, alive=self.running):
            self._terminate(signal.SIGKILL)
            raise RegistryStartError(f"registry did not start; log:\n{self._log_tail()}")

    def _answers(self) -> bool:
        """True once both /v2/ (any status: 401 counts) and the metrics endpoint respond."""
        context = _unverified_context() if self._tls else None
        try:
            urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=context).close()
        except urllib.error.HTTPError:
            pass  # 401 from an auth-protected registry: it is up
        except (urllib.error.URLError, ssl.SSLError) as exc:
            # With client_ca the handshake fails for want of a client certificate (raised
            # bare under TLS 1.3, wrapped in URLError before): the server is up and talking
            # TLS. Anything else (refused, reset) means not yet.
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if not (self._client_ca and isinstance(reason, ssl.SSLError)):
                return False
        except OSError:
            return False
        try:
            urllib.request.urlopen(self.metrics_url, timeout=2).close()
        except OSError:
            return False
        return True

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- configuration -----------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        http: dict[str, Any] = {
            "addr": self.host,
            # A fixed secret: upload state survives restart() (distribution signs upload
            # state with it; a random one per start breaks in-flight uploads).
            "secret": "syncworker-test-secret",
            "debug": {
                "addr": f"{LOOPBACK}:{self.debug_port}",
                "prometheus": {"enabled": True, "path": "/metrics"},
            },
        }
        if self._tls:
            http["tls"] = {"certificate": str(self._tls[0]), "key": str(self._tls[1])}
            if self._client_ca:
                # distribution then requires and verifies a client certificate (mutual TLS).
                http["tls"]["clientcas"] = [str(self._client_ca)]
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
            # With validation on (the default) and no allow list, distribution 2.8 rejects
            # every manifest whose layers carry `urls` (foreign / non-distributable layers).
            "validation": {"manifests": {"urls": {"allow": ["^https?://"]}}},
        }
        auth = self._auth_config()
        if auth:
            config["auth"] = auth
        if self._notifications:
            config["notifications"] = {"endpoints": self._notifications}
        if self._proxy:
            # A pull-through cache of that registry (distribution's proxy mode).
            config["proxy"] = {"remoteurl": self._proxy}
        return config

    def _auth_config(self) -> Mapping[str, Any] | None:
        if self._htpasswd and self._token_auth:
            raise ValueError("choose htpasswd or token_auth, not both")
        if self._htpasswd:
            return {"htpasswd": {"realm": "syncworker-test", "path": str(self._write_htpasswd())}}
        if self._token_auth:
            return {
                "token": {
                    "realm": self._token_auth.realm,
                    "service": self._token_auth.service,
                    "issuer": self._token_auth.issuer,
                    "rootcertbundle": str(self._token_auth.rootcertbundle),
                }
            }
        return None

    def _write_htpasswd(self) -> Path:
        assert self._htpasswd is not None
        user, password = self._htpasswd
        if shutil.which("htpasswd") is None:
            raise RegistryStartError("htpasswd not found: install apache2-utils")
        # -B: bcrypt, the only hash distribution's htpasswd auth accepts; -i reads the
        # password from stdin so it never shows in a process listing.
        result = subprocess.run(
            ["htpasswd", "-Bin", user], input=password, capture_output=True, check=True, text=True
        )
        path = self.workdir / "htpasswd"
        path.write_text(result.stdout.strip() + "\n")
        return path
