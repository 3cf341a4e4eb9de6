"""A configured Redis that does not answer: every command that needs it fails at start,
with one line naming it, instead of retrying for minutes (Celery's broker reconnection
alone would try 100 times). Run against a loopback port nobody listens on."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.cluster import ROOT, SYNCWORKER
from tests.support.mirror import write_sync_config
from tests.support.ports import LOOPBACK, free_port

# A deadline for the command, far below a Celery worker's reconnection attempts (minutes).
COMMAND_DEADLINE = 60.0


@pytest.mark.parametrize(
    "command",
    [
        ["worker"],
        ["beat"],
        ["trigger"],
        ["trigger", "--image", "team/app:v1"],
        ["status"],
        ["sync"],
    ],  # fmt: skip
    ids=lambda c: " ".join(c),
)
def test_unreachable_redis_fails_at_start_with_one_line(tmp_path: Path, command: list[str]) -> None:
    url = f"redis://{LOOPBACK}:{free_port()}/0"
    config = write_sync_config(
        tmp_path, tmp_path / "store", [{"urls": ["http://127.0.0.1:9"], "name": "up"}],
        settings={"redis": url},
    )  # fmt: skip
    done = subprocess.run(
        [*SYNCWORKER, command[0], "-c", str(config), *command[1:]], cwd=ROOT,
        capture_output=True, text=True, timeout=COMMAND_DEADLINE,
    )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"syncworker: Redis at {url} is unreachable"), lines[0]
    assert "Connection refused" in lines[0]
