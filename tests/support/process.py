"""Stopping the processes that fixtures, tests and the benchmark start."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping

__all__ = ["STOP_TIMEOUT", "kill_when_ready", "stop_process"]

# Long enough for a registry or Redis to shut down cleanly on a loaded 2-core machine.
STOP_TIMEOUT = 10.0


def stop_process(
    proc: subprocess.Popen[bytes] | None, sig: signal.Signals = signal.SIGTERM
) -> None:
    """Stop ``proc`` if it still runs: ``sig``, then SIGKILL after STOP_TIMEOUT."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill_when_ready(args: list[str], env: Mapping[str, str] | None = None) -> None:
    """Run ``args`` until it prints ``ready`` (it is in the middle of a write), then SIGKILL
    it: a writer that dies mid-write, leaving whatever it had written."""
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
