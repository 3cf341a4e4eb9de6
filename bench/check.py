"""`python -m bench.check`: `syncworker check --deep` against `sha256sum` on the same blobs.

A filesystem store is written directly (no registry): a few repositories of large layers,
and many repositories of small ones, where the cost per file shows. Then, each warmed once
and repeated, on the page cache (this measures hashing and per-file work, not the disk):

- `sha256sum` over every blob file, one process (coreutils, the floor for one core);
- the same split over one process per core (`xargs -P`);
- `openssl dgst -sha256`, one process: the library behind Python's ``hashlib``, which on
  a CPU with SHA extensions hashes several times faster than coreutils;
- `syncworker check --deep --local` on the store: every tree walked, every blob hashed,
  and an empty store, for the command's fixed cost (imports, configuration).

The figures replace the check section of bench/RESULTS.md (`python -m bench` keeps it).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.proc import run_measured
from bench.sections import CHECK_SECTION, splice
from bench.tools import child_env, syncworker_argv
from syncworker.oci import Descriptor, Digest
from syncworker.oci.mediatypes import OCI_MANIFEST
from syncworker.store import FsStore, IndexEntry
from tests.support.images import canonical_json

__all__ = ["main"]

SECTION_START, SECTION_END = CHECK_SECTION
CHECK = "`syncworker check --deep --local`"
SHA256SUM = "`sha256sum`, 1 process"
OPENSSL = "`openssl dgst -sha256` (the library Python's hashlib uses), 1 process"
BENCH_DIR = Path(__file__).resolve().parent
MIB = 1 << 20
TIMEOUT = 1800.0
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"


@dataclass(frozen=True)
class Shape:
    """``repos`` repositories of one image of ``layers`` layers of ``size`` bytes each."""

    name: str
    repos: int
    layers: int
    size: int

    def describe(self) -> str:
        each = f"{self.size // MIB} MiB" if self.size >= MIB else f"{self.size // 1024} KiB"
        total = self.repos * self.layers * self.size / MIB
        return f"{self.repos} repos × {self.layers} layers of {each} ({total:.0f} MiB)"


SHAPES = (Shape("large", 4, 2, 128 * MIB), Shape("many", 200, 10, 64 * 1024))
QUICK = (Shape("large", 2, 1, 8 * MIB), Shape("many", 10, 4, 64 * 1024))


def _write_store(root: Path, shape: Shape) -> list[Path]:
    """The store of ``shape``; every blob file written (layers, configs, manifests)."""
    store = FsStore(root)
    for r in range(shape.repos):
        repo = f"{shape.name}/r{r:04d}"
        layers = [_put(store, repo, os.urandom(shape.size)) for _ in range(shape.layers)]
        config = _put(store, repo, canonical_json({"architecture": "amd64", "os": "linux"}))
        raw = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": CONFIG, **config},
                "layers": [{"mediaType": LAYER, **layer} for layer in layers],
            }
        )
        digest = Digest.of(raw)
        store.put_manifest(repo, digest, raw)
        store.update_index(repo, [IndexEntry(Descriptor(OCI_MANIFEST, digest, len(raw)), "v1")])
    return sorted(p for p in root.rglob("blobs/sha256/*") if p.is_file())


def _put(store: FsStore, repo: str, data: bytes) -> dict[str, object]:
    digest = Digest.of(data)
    store.put_blob(repo, digest, len(data), [data])
    return {"digest": str(digest), "size": len(data)}


@dataclass(frozen=True)
class Row:
    """One command on one store: medians of wall and CPU seconds, and the MiB it read."""

    store: str
    what: str
    wall: float
    cpu: float
    mib: float = 0.0

    def line(self, startup_cpu: float) -> str:
        if not self.mib:
            return f"| {self.store} | {self.what} | {self.wall:.2f} | {self.cpu:.2f} | — | — |"
        per_cpu = f"{self.mib / self.cpu:.0f}"
        if CHECK in self.what and self.cpu > startup_cpu:
            per_cpu += f" ({self.mib / (self.cpu - startup_cpu):.0f} net of start-up)"
        return (
            f"| {self.store} | {self.what} | {self.wall:.2f} | {self.cpu:.2f} |"
            f" {self.mib / self.wall:.0f} | {per_cpu} |"
        )


def _measure(argv: list[str], reps: int, log: Path) -> tuple[float, float]:
    """Median wall and CPU seconds of ``reps`` runs, after one that warms the cache."""
    runs = [run_measured(argv, env=child_env(), timeout=TIMEOUT, log=log) for _ in range(reps + 1)]
    for run in runs:
        assert run.returncode == 0, run.output
    return statistics.median(r.wall for r in runs[1:]), statistics.median(r.cpu for r in runs[1:])


def _commands(files: list[Path], listing: Path, config: Path) -> dict[str, list[str]]:
    cores = os.cpu_count() or 1
    per = max(1, len(files) // cores + 1)
    return {
        SHA256SUM: ["sha256sum", *map(str, files)],
        f"`sha256sum`, {cores} processes (`xargs -P`)": [
            "sh", "-c", f"xargs -0 -P {cores} -n {per} sha256sum < {listing} > /dev/null"
        ],
        OPENSSL: [
            "openssl", "dgst", "-sha256", *map(str, files)
        ],
        CHECK: syncworker_argv("check", "--deep", "--local", "-q", "-c", str(config)),
    }  # fmt: skip


def _shape_rows(workdir: Path, shape: Shape, reps: int) -> list[Row]:
    root = workdir / shape.name
    shutil.rmtree(root, ignore_errors=True)
    files = _write_store(root, shape)
    listing = workdir / f"{shape.name}.files"
    listing.write_bytes(b"\0".join(str(p).encode() for p in files))
    config = workdir / f"{shape.name}.yaml"
    config.write_text(yaml.safe_dump({"storage": {"rootDirectory": str(root)}}))
    mib = sum(p.stat().st_size for p in files) / MIB
    store = f"{shape.name}: {shape.describe()}, {len(files)} files"
    rows = []
    for what, argv in _commands(files, listing, config).items():
        wall, cpu = _measure(argv, reps, workdir / f"{shape.name}.log")
        rows.append(Row(store, what, wall, cpu, mib))
    shutil.rmtree(root, ignore_errors=True)
    return rows


def _startup(workdir: Path, reps: int) -> Row:
    """The fixed cost of the command (imports, configuration): a check of an empty store."""
    config = workdir / "empty.yaml"
    config.write_text(yaml.safe_dump({"storage": {"rootDirectory": str(workdir / "empty")}}))
    argv = syncworker_argv("check", "--deep", "--local", "-q", "-c", str(config))
    wall, cpu = _measure(argv, reps, workdir / "empty.log")
    return Row("empty: no repository", CHECK, wall, cpu)


def _section(rows: list[Row], reps: int, load: tuple[str, str]) -> list[str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    startup = rows[0].cpu
    return [
        SECTION_START,
        "## `syncworker check --deep` against `sha256sum` (`python -m bench.check`)",
        "",
        f"{date}; {cpu}, {os.cpu_count()} cores; kernel {platform.release()}; load average"
        f" {load[0]} at start, {load[1]} at end; medians of {reps} runs after one warm-up,"
        " files in the page cache (hashing and per-file work, not the disk). Wall time is"
        " what the box's load left; MiB per CPU-second is the cost, which load does not change.",
        "",
        "| store | command | wall s | CPU s | MiB/s | MiB per CPU s |",
        "|---|---|---|---|---|---|",
        *(row.line(startup) for row in rows),
        "",
        *_findings(rows),
        SECTION_END,
    ]


def _findings(rows: list[Row]) -> list[str]:
    """Per store: what hashing a MiB costs the check, net of its start-up, against the
    others (CPU: the wall times of a loaded box are not comparable)."""
    startup = rows[0].cpu
    lines = []
    for store in dict.fromkeys(r.store for r in rows[1:]):
        of = {r.what: r for r in rows if r.store == store}
        check = of[CHECK]
        if check.cpu < startup * 1.2:
            lines.append(f"- {store.split(':')[0]}: too small to tell hashing from start-up.")
            continue
        net = check.mib / (check.cpu - startup)
        sha = of[SHA256SUM].mib / of[SHA256SUM].cpu
        ssl = of[OPENSSL].mib / of[OPENSSL].cpu
        lines.append(
            f"- {store.split(':')[0]}: the check hashes {net:.0f} MiB per CPU-second net of its"
            f" {startup:.2f} s start-up, {net / sha:.1f}× what `sha256sum` does ({sha:.0f}) and"
            f" {net / ssl:.2f}× `openssl dgst`'s ({ssl:.0f}); with its start-up, {check.cpu:.2f}"
            f" CPU-s for {check.mib:.0f} MiB."
        )
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.check", description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=BENCH_DIR / "out" / "check")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="tiny stores: a smoke test")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    start = Path("/proc/loadavg").read_text().split()[0]
    shapes = QUICK if args.quick else SHAPES
    rows = [_startup(args.workdir, args.reps)]
    rows += [row for shape in shapes for row in _shape_rows(args.workdir, shape, args.reps)]
    end = Path("/proc/loadavg").read_text().split()[0]
    section = _section(rows, args.reps, (start, end))
    text = args.results.read_text() if args.results.exists() else ""
    args.results.write_text(splice(text, section, SECTION_START, SECTION_END))
    print("\n".join(section))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
