"""Faults injected into a real worker process, for the Celery tests that need a task to
meet what no real upstream causes on demand. Loaded into the worker with ``-I
tests.support.faults``; the environment says which repository meets which fault:

- ``SYNCWORKER_TEST_BUG=<repo>``: ``sync_repo`` of that repository raises a ``KeyError``,
  as a bug would;
- ``SYNCWORKER_TEST_KILL=<repo>``: the process running ``sync_repo`` of that repository is
  SIGKILLed, as the kernel's OOM killer would;
- ``SYNCWORKER_TEST_SLOW=<repo>``: ``sync_repo`` of that repository first sleeps
  ``SYNCWORKER_TEST_SLOW_SECONDS``, by default a second past a batch's time
  (``worker/repobatch.py`` ``BATCH_SECONDS``);
- ``SYNCWORKER_TEST_KILL_GATE=<directory>``: with the above, each such process first creates
  ``<directory>/held``, then waits until ``<directory>/open`` exists before it is killed, so
  that a test can see something happen while the repository's first start is held.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from syncworker.engine import Mirror, RepoResult
from syncworker.worker.repobatch import BATCH_SECONDS

__all__ = [
    "BUG_ENV",
    "GATE_HELD",
    "GATE_OPEN",
    "KILL_ENV",
    "KILL_GATE_ENV",
    "SLOW_ENV",
    "SLOW_SECONDS_ENV",
]

BUG_ENV = "SYNCWORKER_TEST_BUG"
KILL_ENV = "SYNCWORKER_TEST_KILL"
KILL_GATE_ENV = "SYNCWORKER_TEST_KILL_GATE"
SLOW_ENV = "SYNCWORKER_TEST_SLOW"
SLOW_SECONDS_ENV = "SYNCWORKER_TEST_SLOW_SECONDS"
# The files of the gate directory: created by the process to be killed, and by the test.
GATE_HELD, GATE_OPEN = "held", "open"

_sync_repo = Mirror.sync_repo


def _faulty_sync_repo(self: Mirror, registry: str, repo: str, **options: Any) -> RepoResult:
    if repo == os.environ.get(BUG_ENV):
        raise KeyError("injected")
    if repo == os.environ.get(SLOW_ENV):
        time.sleep(float(os.environ.get(SLOW_SECONDS_ENV, BATCH_SECONDS + 1)))
    if repo == os.environ.get(KILL_ENV):
        _wait_at_gate()
        os.kill(os.getpid(), signal.SIGKILL)
    return _sync_repo(self, registry, repo, **options)


def _wait_at_gate() -> None:
    """Hold until the test opens the gate, if it set one (it bounds the wait itself)."""
    gate = os.environ.get(KILL_GATE_ENV)
    if not gate:
        return
    (Path(gate) / GATE_HELD).touch()
    while not (Path(gate) / GATE_OPEN).exists():
        time.sleep(0.05)


Mirror.sync_repo = _faulty_sync_repo  # type: ignore[method-assign]
