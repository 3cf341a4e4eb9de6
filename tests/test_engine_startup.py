"""Each command loads only what it uses. ``syncworker sync`` into a filesystem store: none
of the distributed machinery (Celery, Redis, fakeredis), no S3 client, no cron parser.
``status`` and ``validate`` read a configuration (and Redis): neither the HTTP client nor
the engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.images import make_image
from tests.support.mirror import write_sync_config
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer

# Top-level packages a filesystem `sync` must never import.
FORBIDDEN = ("celery", "kombu", "redis", "fakeredis", "lupa", "boto3", "botocore", "croniter",
             "prometheus_client", "rich")  # fmt: skip

# Nor does any command that only reads a configuration and Redis.
NEVER_TO_READ_CONFIG = ("celery", "kombu", "boto3", "botocore", "croniter", "prometheus_client",
                        "rich")  # fmt: skip
# What reading a configuration needs none of: the HTTP client's package loads urllib3 (and
# requests must not be loaded at all), the engine loads the client.
CLIENT_AND_ENGINE = ("requests", "urllib3", "syncworker.registry", "syncworker.engine",
                     "syncworker.store")  # fmt: skip
# A filesystem sync's own modules it has no use for.
UNUSED_BY_FS_SYNC = ("syncworker.coord", "syncworker.store.s3", "syncworker.store.registry",
                     "syncworker.observe.metrics", "syncworker.observe.progress")  # fmt: skip

# Runs the real command in a fresh interpreter, then reports every module it imported.
_PROBE = """
import json, runpy, sys
sys.argv = ["syncworker", *sys.argv[1:]]
try:
    runpy.run_module("syncworker", run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _imports_of(*argv: str) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (packages or modules) ``modules`` holds, or holds a part of."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


def test_filesystem_sync_imports_no_distributed_machinery(
    registry: RegistryServer, tmp_path: Path
) -> None:
    push_image(registry.url, "startup/app", "v1", make_image("startup-app"))
    registries = [{"urls": [registry.url], "content": [{"prefix": "startup/**"}]}]
    config = write_sync_config(tmp_path, tmp_path / "store", registries)
    for _run in ("cold", "no-op"):
        code, modules = _imports_of("sync", "-q", "-c", str(config))
        assert code == 0
        assert "syncworker.engine.mirror" in modules and "urllib3" in modules  # it ran
        assert _loaded(modules, FORBIDDEN) == []
        assert _loaded(modules, UNUSED_BY_FS_SYNC) == []


def test_status_and_validate_load_neither_the_http_client_nor_the_engine(
    redis_url: str, tmp_path: Path
) -> None:
    """A configuration with every kind of login and a registry destination: models, the
    credentials file and Redis are read, nothing that talks to a registry is loaded."""
    registries: list[dict[str, Any]] = [{"urls": ["https://upstream.example:5000"]},
                  {"urls": ["https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"],
                   "credentialHelper": "ecr"}]  # fmt: skip
    settings = {"redis": redis_url, "destination": {"url": "https://mirror.example"}}
    logins = {"upstream.example:5000": {"username": "u", "password": "p"}}
    config = write_sync_config(
        tmp_path, tmp_path / "store", registries, credentials=logins, settings=settings
    )
    for argv in (("validate",), ("status", "--json")):
        code, modules = _imports_of(*argv, "-c", str(config))
        assert code == 0
        assert {"syncworker.config.model", "pydantic"} <= modules  # the file was read
        assert _loaded(modules, CLIENT_AND_ENGINE + NEVER_TO_READ_CONFIG) == []
    assert "redis" in modules  # status did ask Redis


def test_the_engine_imports_neither_coordination_nor_config_models() -> None:
    """The engine depends on its Locks protocol and plain values, not on coord/ or config/."""
    probe = (
        "import json, sys, syncworker.engine; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('syncworker.') "
        "or m.split('.')[0] in ('pydantic', 'redis', 'celery', 'fakeredis'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    modules = json.loads(done.stdout)
    assert "syncworker.engine.mirror" in modules
    outside = [m for m in modules if not m.startswith("syncworker.")]
    ours = [m for m in modules if m.startswith(("syncworker.config", "syncworker.coord"))]
    assert outside == [] and ours == []
