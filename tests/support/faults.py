"""Faults injected into a real worker process, for the Celery tests that need a task to
meet what no real upstream causes on demand. Loaded into the worker with ``-I
tests.support.faults``; the environment says which repository meets which fault:

- ``SYNCWORKER_TEST_BUG=<repo>``: ``sync_repo`` of that repository raises a ``KeyError``,
  as a bug would;
- ``SYNCWORKER_TEST_KILL=<repo>``: the process running ``sync_repo`` of that repository is
  SIGKILLed, as the kernel's OOM killer would.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from syncworker.engine import Mirror, RepoResult

__all__ = ["BUG_ENV", "KILL_ENV"]

BUG_ENV = "SYNCWORKER_TEST_BUG"
KILL_ENV = "SYNCWORKER_TEST_KILL"

_sync_repo = Mirror.sync_repo


def _faulty_sync_repo(self: Mirror, registry: str, repo: str, **options: Any) -> RepoResult:
    if repo == os.environ.get(BUG_ENV):
        raise KeyError("injected")
    if repo == os.environ.get(KILL_ENV):
        os.kill(os.getpid(), signal.SIGKILL)
    return _sync_repo(self, registry, repo, **options)


Mirror.sync_repo = _faulty_sync_repo  # type: ignore[method-assign]
