"""Stopping the server processes that fixtures and the benchmark start."""

from __future__ import annotations

import signal
import subprocess

__all__ = ["STOP_TIMEOUT", "stop_process"]

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
