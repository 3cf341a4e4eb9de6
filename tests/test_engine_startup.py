"""``syncworker sync`` into a filesystem store loads only what it uses: none of the
distributed machinery (Celery, Redis, fakeredis), no S3 client, no cron parser."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.images import make_image
from tests.support.mirror import write_sync_config
from tests.support.push import push_image
from tests.support.registry_server import RegistryServer

# Top-level packages a filesystem `sync` must never import.
FORBIDDEN = ("celery", "kombu", "redis", "fakeredis", "lupa", "boto3", "botocore", "croniter",
             "prometheus_client", "rich")  # fmt: skip

# Runs the real command in a fresh interpreter, then reports what it imported.
_PROBE = """
import json, runpy, sys
sys.argv = ["syncworker", "sync", "-q", "-c", sys.argv[1]]
try:
    runpy.run_module("syncworker", run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _imports_of_sync(config: Path) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def test_filesystem_sync_imports_no_distributed_machinery(
    registry: RegistryServer, tmp_path: Path
) -> None:
    push_image(registry.url, "startup/app", "v1", make_image("startup-app"))
    registries = [{"urls": [registry.url], "content": [{"prefix": "startup/**"}]}]
    config = write_sync_config(tmp_path, tmp_path / "store", registries)
    for _run in ("cold", "no-op"):
        code, modules = _imports_of_sync(config)
        assert code == 0
        assert "syncworker" in modules and "requests" in modules  # the probe saw the run
        assert sorted(modules.intersection(FORBIDDEN)) == []


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
