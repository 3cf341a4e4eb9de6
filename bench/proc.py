"""Run processes and measure them: wall time and peak RSS of the whole process tree.

`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` only gives the largest single child that was
waited for, not the sum over a tree (Celery prefork children, skopeo's helpers), so a
sampler thread walks `/proc` every SAMPLE_INTERVAL and sums the RSS of every descendant.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.process import stop_process

__all__ = ["Finished", "RssSampler", "run_measured", "tree_cpu", "tree_rss"]

# 20 Hz: short enough to see the peak of a few-second run, cheap on a 2-core box.
SAMPLE_INTERVAL = 0.05
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _parents() -> dict[int, int]:
    """pid -> ppid of every process now alive."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Field 4 is the ppid; the command name (field 2) may hold spaces, so split after ')'.
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    return parents


def _descendants(roots: Iterable[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(children.get(pid, ()))
    return found


def _rss(pid: int) -> int:
    try:
        resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident * PAGE_SIZE


def _cpu_ticks(pid: int) -> int:
    """utime + stime of `pid`, plus cutime + cstime of its children already reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return sum(int(value) for value in fields[11:15])  # stat fields 14-17 (proc(5))


def tree_cpu(roots: Iterable[int]) -> float:
    """CPU seconds used so far by `roots` and all their live descendants."""
    return sum(_cpu_ticks(pid) for pid in _descendants(roots)) / CLOCK_TICKS


def tree_rss(roots: Iterable[int]) -> int:
    """Bytes resident in `roots` and all their descendants right now."""
    return sum(_rss(pid) for pid in _descendants(roots))


class RssSampler:
    """Polls the trees under the registered roots in a thread; `peak` is the largest sum."""

    def __init__(self, interval: float = SAMPLE_INTERVAL) -> None:
        self.peak = 0
        self._roots: set[int] = set()
        self._interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def add(self, pid: int) -> None:
        with self._lock:
            self._roots.add(pid)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        with self._lock:
            roots = set(self._roots)
        if roots:
            self.peak = max(self.peak, tree_rss(roots))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()


@dataclass(frozen=True)
class Finished:
    """What one measured command did."""

    wall: float
    peak_rss: int
    returncode: int
    output: str
    cpu: float = 0.0  # CPU seconds (user + system) of the measured trees


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float,
    log: Path | None = None,
    extra_roots: Sequence[int] = (),
) -> Finished:
    """Run `argv` to completion: wall time, and peak RSS of its tree plus `extra_roots`' trees
    (long-running workers doing the work). Output goes to `log` too."""
    sink = log.open("wb") if log else subprocess.DEVNULL
    # Our own children's CPU once reaped (grandchildren included, as each parent reaps its
    # own); the long-running `extra_roots` are read from /proc before and after.
    children_before = _children_cpu()
    extra_before = tree_cpu(extra_roots)
    try:
        with RssSampler() as sampler:
            for pid in extra_roots:
                sampler.add(pid)
            start = time.perf_counter()
            proc = subprocess.Popen(
                list(argv),
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
            sampler.add(proc.pid)
            sampler.sample()
            try:
                proc.wait(timeout=timeout)
            finally:
                stop_process(proc)
            wall = time.perf_counter() - start
            extra_cpu = tree_cpu(extra_roots) - extra_before
    finally:
        if log:
            sink.close()  # type: ignore[union-attr]
    output = log.read_text(errors="replace")[-4000:] if log else ""
    cpu = _children_cpu() - children_before + extra_cpu
    return Finished(wall, sampler.peak, proc.returncode, output, cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
