"""``python -m bench.scale_memory --before REV``: peak memory of ``syncworker sync`` over
catalogs of growing size, this checkout and ``REV`` side by side in one run.

A synthetic registry (``tests/support/synthetic_registry.py``) serves one-tag repositories
of one 4 KiB layer. Per catalog size and per code (``REV``'s ``syncworker/``, taken with
``git archive``, and this checkout's), each ``syncworker sync -q`` is one process: its peak
RSS and CPU seconds come from ``wait4`` (exact, for one process; no sampling), its requests
from the registry's counters, and the box's 1-minute load average is read before and after.

- ``cold`` into an empty store, then ``noop`` over the store the cold run left (both codes'
  no-op runs read the same store);
- ``listed``: every tag filtered out by the content rule (``tags.regex`` matching none), so
  each repository costs its tag list and nothing is written: the walk, the thread pool and
  the summary at a catalog size where a cold copy would take the box an hour.

The section it writes into ``bench/RESULTS.md`` sits between its own markers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.report import BENCH_DIR
from bench.sections import SCALE_MEMORY_SECTION, splice
from bench.tools import REPO_ROOT, code_at, syncworker_argv
from tests.support.synthetic_registry import SyntheticRegistry

__all__ = ["Run", "main"]

START, END = SCALE_MEMORY_SECTION
LAYER_SIZE = 4096
TIMEOUT = 7200.0


@dataclass(frozen=True)
class Run:
    code: str  # "before" or "after"
    case: str  # cold, noop, listed
    repos: int
    wall: float
    cpu: float
    peak_rss_mib: float
    requests: int
    load_before: float
    load_after: float
    returncode: int


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _config(path: Path, url: str, root: Path, *, listed: bool) -> Path:
    rule: dict[str, Any] = {"prefix": "**"}
    if listed:
        rule["tags"] = {"regex": "^no tag is named this$"}
    registry = {"name": "upstream", "urls": [url], "content": [rule]}
    config = {
        "storage": {"rootDirectory": str(root)},
        "extensions": {"sync": {"enable": True, "registries": [registry]}},
        "syncworker": {"concurrency": 8},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _sync(code: Path, config: Path, log: Path) -> tuple[float, float, float, int]:
    """Wall and CPU seconds, peak RSS in MiB, exit code of one ``syncworker sync -q``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWORKER_")}
    env["PYTHONPATH"] = str(code)
    started = time.perf_counter()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            syncworker_argv("sync", "-c", str(config), "-q"),
            cwd=code, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode


def _measure(
    code_name: str, code: Path, case: str, registry: SyntheticRegistry, config: Path, log: Path
) -> Run:
    load, before = _load(), registry.total_requests()
    wall, cpu, rss, rc = _sync(code, config, log)
    run = Run(
        code_name, case, len(registry.repos), wall, cpu, rss,
        registry.total_requests() - before, load, _load(), rc,
    )  # fmt: skip
    print(
        f"[scale-memory] {case} {run.repos} {code_name}: {rss:.0f} MiB peak, {cpu:.1f} CPU-s, "
        f"{wall:.0f} s, {run.requests} requests, load {load:.1f}-{run.load_after:.1f}, rc {rc}",
        flush=True,
    )
    return run


def _size(workdir: Path, codes: dict[str, Path], repos: int, cases: list[str]) -> list[Run]:
    runs: list[Run] = []
    with SyntheticRegistry(repos, layer_size=LAYER_SIZE) as registry:
        if "listed" in cases:
            config = _config(workdir / "listed.yaml", registry.url, workdir / "unused", listed=True)
            for name, code in codes.items():
                runs.append(_measure(name, code, "listed", registry, config, workdir / "log"))
        if "cold" in cases or "noop" in cases:
            stores = {name: workdir / f"store-{name}" for name in codes}
            for name, code in codes.items():
                shutil.rmtree(stores[name], ignore_errors=True)
                config = _config(workdir / f"{name}.yaml", registry.url, stores[name], listed=False)
                cold = _measure(name, code, "cold", registry, config, workdir / "log")
                if "cold" in cases:
                    runs.append(cold)
                if "cold" not in cases:
                    break  # one cold store serves every code's no-op
            shared = _config(
                workdir / "noop.yaml", registry.url, next(iter(stores.values())), listed=False
            )
            if "noop" in cases:
                for name, code in codes.items():
                    runs.append(_measure(name, code, "noop", registry, shared, workdir / "log"))
            for store in stores.values():
                shutil.rmtree(store, ignore_errors=True)
    return runs


def section(runs: list[Run], before: str, after: str) -> list[str]:
    """The report's section: one row per case and size, before and after side by side."""
    lines = [
        START,
        "## Memory of `syncworker sync` by catalog size (synthetic registry)",
        "",
        f"`python -m bench.scale_memory`: one-tag repositories of one 4 KiB layer, concurrency 8;"
        f" before = `{before}`, after = `{after}`, run alternately in one bench run. Peak RSS"
        " and CPU of the one `syncworker sync` process (`wait4`); load = the box's 1-minute"
        " load average before and after each run (2 cores, shared).",
        "",
        "| case | repositories | peak RSS MiB before → after | CPU s before → after |"
        " CPU ms / repo after | requests / repo | load |",
        "|---|---|---|---|---|---|---|",
    ]
    keyed = {(r.case, r.repos, r.code): r for r in runs}
    for case, repos in sorted({(r.case, r.repos) for r in runs}, key=lambda k: (k[0], k[1])):
        old, new = keyed.get((case, repos, "before")), keyed.get((case, repos, "after"))
        if new is None:
            continue
        loads = [r for r in (old, new) if r is not None]
        low = min(min(r.load_before, r.load_after) for r in loads)
        high = max(max(r.load_before, r.load_after) for r in loads)
        rss_old = f"{old.peak_rss_mib:.0f}" if old else "—"
        cpu_old = f"{old.cpu:.1f}" if old else "—"
        lines.append(
            f"| {case} | {repos:,} | {rss_old} → {new.peak_rss_mib:.0f} | {cpu_old} → "
            f"{new.cpu:.1f} | {1000 * new.cpu / repos:.2f} | {new.requests / repos:.2f} |"
            f" {low:.0f}–{high:.0f} |"
        )
    lines.append(END)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_memory", description=__doc__)
    parser.add_argument("--before", required=True, help="the revision to compare with")
    parser.add_argument(
        "--plan",
        default="cold+noop:5000,noop:20000,listed:20000,listed:100000",
        help="comma list of CASES:REPOS, CASES a +-list of cold, noop, listed",
    )
    parser.add_argument(
        "--after-first", action="store_true", help="run this checkout's code before REV's"
    )
    parser.add_argument("--workdir", type=Path, default=BENCH_DIR / "out" / "scale-memory")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    before = subprocess.run(
        ["git", "rev-parse", "--short", args.before], cwd=REPO_ROOT, capture_output=True,
        text=True, check=True,
    ).stdout.strip()  # fmt: skip
    after = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    codes = {"before": code_at(args.workdir, before), "after": code_at(args.workdir, None)}
    if args.after_first:
        codes = {"after": codes["after"], "before": codes["before"]}
    runs: list[Run] = []
    for item in args.plan.split(","):
        cases, repos = item.split(":")
        runs += _size(args.workdir, codes, int(repos), cases.split("+"))
        (args.workdir / "runs.json").write_text(json.dumps([asdict(r) for r in runs], indent=1))
    text = args.results.read_text() if args.results.exists() else ""
    args.results.write_text(splice(text, section(runs, before, after), START, END))
    print(f"[scale-memory] wrote {args.results}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
