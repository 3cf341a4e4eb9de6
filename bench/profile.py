"""`python -m bench.profile`: where `syncworker sync` spends its time, by py-spy sampling.

Seeds the small set into a fresh upstream, then records a cold and a no-op run twice each:
with `--gil` (only the thread holding the GIL: where Python CPU time goes) and with `--idle`
(every thread, waiting or not: where threads wait on sockets, locks, fsync).
Writes the raw stacks to bench/out/profile-*.txt and a summary to bench/out/profile.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench import seed
from bench.report import BENCH_DIR
from bench.tools import child_env, code_root, syncworker_argv, write_sync_config
from tests.support.registry_server import RegistryServer

__all__ = ["summarize"]

RATE = 200  # samples per second: enough resolution for a few-second run
TOP = 15
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        file = file.split(marker)[-1]
    return f"{match['func']} ({file})"


# Buckets for a one-glance breakdown: the first rule whose marker appears in a stack wins.
_BUCKETS = (
    ("imports", ("_find_and_load",)),
    ("coord: locks (redis-py Lock, keeper threads)", ("coord/redislocks.py",)),
    ("coord: other (Redis client, Lua, keys)", ("redis/", "coord/", "lupa")),
    ("store (fs writes, fsync, index.json)", ("store/fs.py", "store/layout.py")),
    ("digest verification", ("oci/digest.py",)),
    ("HTTP client (requests/urllib3/http.client)", ("urllib3", "http/client", "requests/")),
    ("registry client (ours)", ("syncworker/registry/",)),
    ("engine", ("syncworker/engine/",)),
    ("config", ("syncworker/config/",)),
)


def _bucket(stack: str) -> str:
    for name, markers in _BUCKETS:
        if any(marker in stack for marker in markers):
            return name
    return "other (threads, pools, interpreter)"


def summarize(raw: Path, title: str) -> str:
    """Top self and inclusive frames of a py-spy raw (collapsed stacks) file, as markdown."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = importing = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count, frames = int(count_text), [_frame_name(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue  # a thread with no Python frame (native code only)
        total += count
        buckets[_bucket(stack)] += count
        if any(f.startswith("_find_and_load ") for f in frames):
            importing += count
        self_time[frames[-1]] += count
        for name in set(frames):
            if "syncworker/" in name:
                inclusive[name] += count
    if not total:
        return f"### {title}\n\nno samples\n"

    def table(counter: Counter[str]) -> list[str]:
        return [f"| {100 * n / total:.1f}% | `{name}` |" for name, n in counter.most_common(TOP)]

    return "\n".join(
        [
            f"### {title}",
            "",
            f"{total} samples at {RATE} Hz; {100 * importing / total:.0f}% in imports.",
            "",
            "| share | where |",
            "|---|---|",
            *table(buckets),
            "",
            "| self | frame |",
            "|---|---|",
            *table(self_time),
            "",
            "| inclusive | syncworker frame |",
            "|---|---|",
            *table(inclusive),
            "",
        ]
    )


def _record(out: Path, config: Path, idle: bool) -> None:
    argv = ["py-spy", "record", "--rate", str(RATE), "--format", "raw", "-o", str(out)]
    argv += ["--idle"] if idle else ["--gil"]
    argv += ["--", *syncworker_argv("sync", "-c", str(config), "-q")]
    subprocess.run(
        argv, env=child_env(), cwd=code_root(), check=True, capture_output=True, timeout=1800
    )


def main() -> int:
    if shutil.which("py-spy") is None:
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    out = BENCH_DIR / "out"
    work = out / "profile"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    parts = ["## Profiles (py-spy, small set)", ""]
    with RegistryServer() as upstream:
        seed.seed_small(upstream)
        config = write_sync_config(work / "sync.yaml", upstream.url, work / "store")
        for case in ("cold", "noop"):
            for idle in (False, True):
                if case == "cold":
                    shutil.rmtree(work / "store", ignore_errors=True)
                kind = "all threads (--idle)" if idle else "GIL holder (--gil)"
                raw = out / f"profile-{case}-{'idle' if idle else 'gil'}.txt"
                _record(raw, config, idle)
                parts.append(summarize(raw, f"{case}, {kind}"))
    (out / "profile.md").write_text("\n".join(parts))
    print(f"wrote {out / 'profile.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
