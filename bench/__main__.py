"""`python -m bench`: seed upstream registries on loopback, measure, write bench/RESULTS.md.

Everything it starts (registries, Redis, workers, the delaying proxy) is stopped on exit.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import lean, seed
from bench.report import BENCH_DIR, plot_workers, write_report
from bench.results import save_results
from bench.scale import SCALE_QUICK_REPOS, SCALE_REPOS, measure_scale
from bench.scale_report import run_note, scale_section, splice_scale_section
from bench.scenarios import Bench
from bench.tools import REPO_ROOT, snapshot_code

SETS = ("small", "big", "huge")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement")
    parser.add_argument(
        "--sets", default=",".join(SETS), help="comma list of: small,big,huge,scale"
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma list of: skopeo,registry,workers,incremental,pinned,startup,manytags",
    )
    parser.add_argument("--quick", action="store_true", help="tiny data sets: a smoke test")
    parser.add_argument("--workdir", type=Path, default=BENCH_DIR / "out" / "run")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    return parser.parse_args()


def _run(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT).stdout.strip()
    except OSError:
        return "?"


def _machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    dirty = _run("git", "status", "--porcelain", "--", "syncworker")
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _run("git", "rev-parse", "--short", "HEAD")
        + (" + uncommitted syncworker/ changes" if dirty else ""),
        "machine": f"{cpu}, {os.cpu_count()} cores, {mem_kib / 2**20:.1f} GiB RAM",
        "kernel": platform.release(),
        "load average at start": Path("/proc/loadavg").read_text().split()[0],
        "tools": f"Python {platform.python_version()}, {_run('skopeo', '--version')}, "
        f"docker-registry {_run('/usr/bin/docker-registry', '--version').split()[-1]}",
    }


def _describe_sets(quick: bool) -> str:
    big = " + ".join("×".join(f"{s} MiB" for s in sizes) for sizes in seed.BIG_IMAGES)
    return (
        f"small: {seed.SMALL_REPOS} repos × {seed.SMALL_TAGS} tags × {seed.SMALL_LAYERS} layers of "
        f"{seed.SMALL_LAYER_SIZE // 1024} KiB (1 from a pool of {seed.SMALL_POOL}), every "
        f"{seed.INDEX_EVERY}rd tag a 2-platform index; big: images of {big}; "
        f"huge: 1 layer of {seed.HUGE_LAYER_MIB} MiB" + (" (QUICK: reduced)" if quick else "")
    )


def _quick() -> None:
    seed.SMALL_REPOS, seed.SMALL_TAGS = 6, 3
    seed.BIG_IMAGES = ((8, 4), (16,))
    seed.HUGE_LAYER_MIB = 64


def _small(bench: Bench, skip: set[str]) -> None:
    upstream = bench.registry()
    bench.log("seeding the small set")
    data = seed.seed_small(upstream)
    bench.read_limit(data, upstream)
    if "skopeo" not in skip:
        bench.skopeo(data, upstream)
    config = bench.sync(data, upstream)
    if "pinned" not in skip:
        lean.pinned(bench, data, upstream)
    if "registry" not in skip:
        bench.sync_to_registry(data, upstream)
    if "workers" not in skip:
        bench.workers(data, upstream)
    if "incremental" not in skip:
        bench.incremental(data, upstream, config)


def _big(bench: Bench, skip: set[str], cache: Path) -> None:
    upstream = bench.registry()
    bench.log("seeding the big set (layers cached in bench/out/cache)")
    data = seed.seed_big(upstream, cache)
    bench.read_limit(data, upstream)
    if "skopeo" not in skip:
        bench.skopeo(data, upstream)
    bench.sync(data, upstream)


def _huge(bench: Bench, cache: Path) -> None:
    upstream = bench.registry()
    bench.log("seeding the 1 GiB image")
    data = seed.seed_huge(upstream, cache)
    bench.huge(data, upstream)


def _stop_on_sigterm() -> None:
    """SIGTERM (and SIGINT, which a shell's `cmd &` ignores) unwind like an exception, so
    every server and worker is stopped and the measurements so far are written."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main() -> int:
    _stop_on_sigterm()
    args = _parse()
    if args.quick:
        _quick()
    sets, skip = set(args.sets.split(",")), set(filter(None, args.skip.split(",")))
    meta = _machine()
    started = time.monotonic()
    args.workdir.mkdir(parents=True, exist_ok=True)
    snapshot_code(args.workdir)  # the commit recorded in meta is what runs, start to end
    bench = Bench(args.workdir, args.reps, lambda text: print(f"[bench] {text}", flush=True))
    cache = BENCH_DIR / "out" / "cache"
    try:
        if "startup" not in skip:
            lean.startup(bench)
        if "manytags" not in skip:
            lean.many_tags(bench)
        if "small" in sets:
            _small(bench, skip)
        if "big" in sets:
            _big(bench, skip, cache)
        if "huge" in sets:
            _huge(bench, cache)
        if "scale" in sets:
            repos = SCALE_QUICK_REPOS if args.quick else SCALE_REPOS
            bench.measurements += measure_scale(args.workdir, bench.log, repos)
    finally:
        bench.close()
        meta.update(
            {
                "load average at end": Path("/proc/loadavg").read_text().split()[0],
                "repetitions": args.reps,
                "data sets": _describe_sets(args.quick),
                "bench duration": f"{(time.monotonic() - started) / 60:.1f} min",
            }
        )
        out = args.results.parent
        save_results(args.workdir.parent / "results.json", meta, bench.measurements)
        if sets == {"scale"}:  # the other sets' figures stay as they are
            text = args.results.read_text() if args.results.exists() else ""
            section = scale_section(bench.measurements, run_note(meta))
            args.results.write_text(splice_scale_section(text, section))
        else:
            plot_workers(out / "workers.png", bench.measurements)
            write_report(args.results, meta, bench.measurements)
        print(f"[bench] wrote {args.results}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
