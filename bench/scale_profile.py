"""Where a Celery worker's CPU goes on a no-op run of the scale set: cProfile in every
worker process, timed by process CPU (so the CPU of a process's other threads, the engine's
pools and the lock keeper, is charged to what its main thread was doing meanwhile).

    python -m bench.scale_profile --repos 2000 --out /tmp/prof

A synthetic registry of ``--repos`` one-tag repositories is mirrored once by plain workers
(cold); then workers started with the profiler run the no-op run, and on their shutdown
each process writes ``<out>/<role>-<pid>.prof`` (``role``: ``main``, the consumer, or
``child``, a prefork process running tasks). The top functions of each role are printed.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.proc import tree_cpu
from bench.scale import SCALE_PROCESSES, SCALE_WORKERS, scale_servers
from bench.tools import CeleryWorkers, child_env, code_root, syncworker_argv

__all__ = ["PROFILE_DIR_ENV", "install"]

#: Set in a worker's environment: where its processes write their profiles.
PROFILE_DIR_ENV = "SYNCWORKER_BENCH_PROFILE_DIR"
_profiles: dict[str, cProfile.Profile] = {}
# Where `bench` is imported from (the measured code runs from a snapshot without it).
BENCH_ROOT = Path(__file__).resolve().parent.parent


def install() -> None:
    """Profile this worker's processes (called before the worker starts, when
    ``PROFILE_DIR_ENV`` is set)."""
    from celery.signals import (
        worker_init,
        worker_process_init,
        worker_process_shutdown,
        worker_shutdown,
    )

    worker_init.connect(lambda **_: _start("main"), weak=False)
    worker_process_init.connect(lambda **_: _start("child"), weak=False)
    worker_shutdown.connect(lambda **_: _stop("main"), weak=False)
    worker_process_shutdown.connect(lambda **_: _stop("child"), weak=False)


def _start(role: str) -> None:
    _profiles.clear()  # a forked child inherits its parent's, stopped
    profile = cProfile.Profile(time.process_time)
    _profiles[role] = profile
    profile.enable()


def _stop(role: str) -> None:
    profile = _profiles.pop(role, None)
    if profile is not None:
        profile.disable()
        profile.dump_stats(Path(os.environ[PROFILE_DIR_ENV]) / f"{role}-{os.getpid()}.prof")


class _ProfiledWorkers(CeleryWorkers):
    """Workers whose launcher installs the profiler before the worker starts."""

    def _start(self, number: int) -> None:
        launcher = (
            "import sys, bench.scale_profile as p; p.install(); "
            "from syncworker.cli import main; sys.exit(main())"
        )
        argv = [*syncworker_argv("worker", "-c", str(self._config), "-l", "INFO",
                                 "-n", f"bench{number}@%h", *self._options)]  # fmt: skip
        argv[2] = launcher
        env = {**child_env(), PROFILE_DIR_ENV: str(self._logdir)}
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH_ROOT), env["PYTHONPATH"]])
        log = self._logdir / f"worker-{number}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                argv, env=env, cwd=code_root(), stdin=subprocess.DEVNULL,
                stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._procs.append(proc)
        self._logs.append(log)


def _report(out: Path, role: str, top: int) -> None:
    files = sorted(str(p) for p in out.glob(f"{role}-*.prof"))
    if not files:
        print(f"no {role} profiles in {out}")
        return
    stats = pstats.Stats(*files)
    print(f"===== {role}: {len(files)} processes, {stats.total_tt:.2f} CPU s")  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_profile", description=__doc__)
    parser.add_argument("--repos", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/scale-profile"))
    parser.add_argument("--top", type=int, default=45)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.prof"):
        old.unlink()
    with scale_servers(args.repos, out) as (config, _, _):
        _run(CeleryWorkers(config, SCALE_WORKERS, out, concurrency=SCALE_PROCESSES), out, "cold")
        profiled = _ProfiledWorkers(config, SCALE_WORKERS, out, concurrency=SCALE_PROCESSES)
        _run(profiled, out, "noop", args.repos)
    for role in ("child", "main"):
        _report(out, role, args.top)


def _run(workers: CeleryWorkers, out: Path, case: str, repos: int = 0) -> Any:
    with workers:
        before = tree_cpu(workers.pids)
        done = workers.trigger(out / f"trigger-{case}.log")
        time.sleep(1)
        used = tree_cpu(workers.pids) - before
    if repos:
        print(f"{case}: workers {1000 * used / repos:.2f} ms CPU/repo (profiled), {done.wall:.1f}s")
    return done


if __name__ == "__main__":
    main()
