"""The deploy files' own tools (docker-compose, kubectl, promtool), run as CI runs them.

A missing tool FAILS the test with the Debian package to install (scripts/install-deps.sh
installs them): a check that skips when its tool is absent would pass on every machine
that never ran it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["DEBIAN_PACKAGES", "run_tool"]

# binary -> the Debian package that provides it (as in scripts/install-deps.sh)
DEBIAN_PACKAGES = {
    "docker-compose": "docker-compose",
    "kubectl": "kubernetes-client",
    "promtool": "prometheus",
}
TOOL_TIMEOUT = 120.0


def run_tool(binary: str, *args: str, cwd: Path) -> str:
    """``binary args...`` in ``cwd``: its standard output; the test fails on a missing tool
    or a non-zero exit, with what the tool said."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(
            f"{binary} not found: install Debian's {DEBIAN_PACKAGES[binary]} "
            "(scripts/install-deps.sh does)",
            pytrace=False,
        )
    done = subprocess.run(
        [path, *args], cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT
    )
    assert done.returncode == 0, f"{binary} {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout
