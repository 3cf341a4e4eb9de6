"""The programs under measurement: skopeo sync, `syncworker sync`, syncworker's Celery workers.

Each `run_*` returns `Finished` (wall time, peak RSS of the process tree, exit code); the
caller wraps it in a `TrafficMeter` to count what the upstream served.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bench.proc import Finished, run_measured
from bench.seed import DataSet
from tests.support.process import stop_process

__all__ = [
    "REPO_ROOT",
    "CeleryWorkers",
    "check_ok",
    "child_env",
    "code_at",
    "code_root",
    "compile_code",
    "snapshot_code",
    "run_skopeo",
    "run_sync",
    "syncworker_argv",
    "use_code",
    "write_skopeo_source",
    "write_sync_config",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
# Where measured processes import syncworker from: a copy taken when the run starts
# (snapshot_code), so commits landing during a long run do not mix versions in one table.
_code_root = REPO_ROOT
RUN_TIMEOUT = 1800.0  # one measured command; generous for a loaded 2-core box
WORKER_READY_TIMEOUT = 120.0
# One Celery worker = one process taking one task (one repository) at a time; parallelism
# inside a repository is the engine's blob_concurrency. Scaling then shows what more workers
# (more machines) buy.
WORKER_OPTIONS = ("--concurrency", "1", "-P", "prefork", "--without-gossip", "--without-mingle")


def syncworker_argv(*args: str) -> list[str]:
    """The `syncworker` command of this checkout (installed or not)."""
    launcher = "import sys; from syncworker.cli import main; sys.exit(main())"
    return [sys.executable, "-c", launcher, *args]


def snapshot_code(workdir: Path) -> Path:
    """Copy the checkout's `syncworker/` package under `workdir`, compiled; run it from
    there."""
    global _code_root
    target = workdir / "code"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(
        REPO_ROOT / "syncworker",
        target / "syncworker",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    compile_code(target)
    _code_root = target
    return target


def code_at(workdir: Path, rev: str | None) -> Path:
    """A compiled copy of ``syncworker/`` at ``rev`` (None: this checkout as it is now)."""
    target = workdir / ("code-" + (rev or "head"))
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if rev is None:
        shutil.copytree(REPO_ROOT / "syncworker", target / "syncworker")
    else:
        archive = subprocess.run(
            ["git", "archive", rev, "syncworker"], cwd=REPO_ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    compile_code(target)
    return target


def compile_code(root: Path) -> None:
    """Write the bytecode of every module under ``root``, as installing a program does: with
    PYTHONDONTWRITEBYTECODE set (as here) each measured process would otherwise compile
    syncworker's modules again, about 0.13 CPU-s of every start."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root)], check=True)


def use_code(root: Path) -> None:
    """Run measured processes from ``root``, a directory holding a ``syncworker/`` copy."""
    global _code_root
    _code_root = root


def code_root() -> Path:
    """The directory measured processes run in (and import syncworker from)."""
    return _code_root


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWORKER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_code_root), env.get("PYTHONPATH")]))
    return env


def write_sync_config(
    path: Path,
    upstream_url: str,
    root: Path,
    *,
    redis_url: str | None = None,
    concurrency: int = 8,
    destination: str | None = None,
    broker_url: str | None = None,
    tag_concurrency: int | None = None,
) -> Path:
    """A zot-style config mirroring every repository of `upstream_url` into `root`, or into
    the registry at `destination`."""
    settings: dict[str, Any] = {"concurrency": concurrency}
    if tag_concurrency:
        settings["tagConcurrency"] = tag_concurrency
    if redis_url:
        settings["redis"] = redis_url
    if destination:
        settings["destination"] = {"url": destination}
    if broker_url:
        settings["celery"] = {"broker_url": broker_url}
    config = {
        "storage": {"rootDirectory": str(root)},
        "extensions": {
            "sync": {
                "enable": True,
                "registries": [
                    {
                        "name": "upstream",
                        "urls": [upstream_url],
                        "content": [{"prefix": "**"}],
                    }
                ],
            }
        },
        "syncworker": settings,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def run_sync(config: Path, log: Path) -> Finished:
    return run_measured(
        syncworker_argv("sync", "-c", str(config), "-q"),
        env=child_env(),
        cwd=code_root(),
        timeout=RUN_TIMEOUT,
        log=log,
    )


def write_skopeo_source(path: Path, registry_host: str, data: DataSet) -> Path:
    """skopeo's YAML source: every repository, every tag (`[]`), plain HTTP (skopeo-sync(1))."""
    source = {
        registry_host: {
            "tls-verify": False,
            "images": {repo: [] for repo in sorted(data.repos)},
        }
    }
    path.write_text(yaml.safe_dump(source))
    return path


def run_skopeo(source: Path, dest_kind: str, destination: str, log: Path) -> Finished:
    """`skopeo sync --all --preserve-digests --src yaml` to `dir` or `docker` (plain HTTP)."""
    argv = ["skopeo", "sync", "--all", "--preserve-digests", "--src", "yaml", "--dest", dest_kind]
    if dest_kind == "docker":
        argv.append("--dest-tls-verify=false")
    argv += [str(source), destination]
    return run_measured(argv, timeout=RUN_TIMEOUT, log=log)


class CeleryWorkers:
    """`count` worker processes on one config; started on enter, stopped on exit."""

    def __init__(self, config: Path, count: int, logdir: Path, concurrency: int = 1) -> None:
        self._config, self._count, self._logdir = config, count, logdir
        self._options = ("--concurrency", str(concurrency), *WORKER_OPTIONS[2:])
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []

    def __enter__(self) -> CeleryWorkers:
        try:
            for number in range(self._count):
                self._start(number)
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs:
            stop_process(proc)  # SIGTERM: Celery's warm shutdown, then SIGKILL on timeout
        self._procs.clear()

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self._procs]

    def _start(self, number: int) -> None:
        log = self._logdir / f"worker-{number}.log"
        argv = syncworker_argv(
            "worker", "-c", str(self._config), "-l", "INFO", "-n", f"bench{number}@%h",
            *self._options,
        )  # fmt: skip
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                argv, env=child_env(), cwd=code_root(), stdin=subprocess.DEVNULL,
                stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._procs.append(proc)
        self._logs.append(log)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while time.monotonic() < deadline:
            for proc, log in zip(self._procs, self._logs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited ({proc.returncode}); see {log}")
            if all(" ready." in log.read_text(errors="replace") for log in self._logs):
                return
            time.sleep(0.2)
        raise RuntimeError(f"workers not ready after {WORKER_READY_TIMEOUT}s; see {self._logdir}")

    def trigger(self, log: Path) -> Finished:
        """`syncworker trigger --wait`; peak RSS counts the workers' trees and the trigger."""
        return run_measured(
            syncworker_argv("trigger", "-c", str(self._config), "--wait",
                            "--timeout", str(RUN_TIMEOUT)),
            env=child_env(), cwd=code_root(), timeout=RUN_TIMEOUT + 60, log=log,
            extra_roots=self.pids,
        )  # fmt: skip


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])


def check_ok(finished: Finished, what: str) -> None:
    if finished.returncode != 0:
        raise RuntimeError(f"{what} exited {finished.returncode}:\n{tail(finished.output)}")
