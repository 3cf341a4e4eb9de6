"""``syncworker gc`` in a process whose report goes into a pipe one page long: once the
pipe is full gc blocks on its next line, so a test that reads N lines knows gc is only a
few dozen deletions further, never at the end, and can pause or kill it there."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

__all__ = ["PIPE_BYTES", "gc_on_a_pipe"]

PIPE_BYTES = 4096


def gc_on_a_pipe(config: Path, *, stderr: int) -> tuple[subprocess.Popen[bytes], BinaryIO]:
    """``syncworker gc -c CONFIG --grace 0s`` started, its stdout on a pipe of PIPE_BYTES
    (``stderr`` as ``subprocess`` takes it); the process and the pipe's reading end."""
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    gc = subprocess.Popen(
        [sys.executable, "-m", "syncworker", "gc", "-c", str(config), "--grace", "0s"],
        stdout=write,
        stderr=stderr,
    )
    os.close(write)
    return gc, os.fdopen(read, "rb")
