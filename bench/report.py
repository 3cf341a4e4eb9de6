"""bench/RESULTS.md and the worker-scaling plot, from the measurements of one run.

`python -m bench.report [results.json]` rebuilds both from a saved run.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.results import Measurement, load_results
from bench.scale_report import existing_section, scale_section
from bench.sections import KEPT_SECTIONS, existing

__all__ = ["Target", "evaluate_targets", "plot_workers", "write_report"]

BENCH_DIR = Path(__file__).resolve().parent
MIB = 2**20
RSS_LIMIT = 100 * 10**6  # peak RSS copying a 1 GiB blob must stay below 100 MB
STARTUP_CPU = 0.35  # CPU-s of a no-op sync of one repository with one tag
MANY_TAGS_WALL = 6.0  # s, a no-op of a 1,000-tag repository at +20 ms per request
FINDINGS = BENCH_DIR / "findings.md"  # hand-written analysis, appended to the report


@dataclass(frozen=True)
class Target:
    name: str
    wanted: str
    measured: str
    met: bool | None  # None: not measured in this run


class _Index:
    def __init__(self, measurements: list[Measurement]) -> None:
        self._by_key = {m.key: m for m in measurements}

    def wall(self, key: str) -> float:
        m = self._by_key.get(key)
        return m.median("wall") if m and m.samples else math.nan

    def get(self, key: str) -> Measurement | None:
        return self._by_key.get(key)

    def cpu(self, key: str) -> float:
        m = self._by_key.get(key)
        return m.median("cpu") if m and m.samples else math.nan

    def cpu_per_blob(self, key: str) -> float:
        """CPU ms of the measured process tree per blob downloaded."""
        m = self._by_key.get(key)
        return _cpu_per_blob(m) if m else math.nan


def _cpu_per_blob(m: Measurement) -> float:
    gets = m.median("blob_gets") if m.samples else 0
    return m.median("cpu") * 1000 / gets if gets else math.nan


def _ratio_target(name: str, wanted: str, ratio: float, ok: bool | None, how: str) -> Target:
    if math.isnan(ratio):
        return Target(name, wanted, "not measured", None)
    return Target(name, wanted, f"{ratio:.2f}× ({how})", ok)


def _seconds_target(name: str, seconds: float, limit: float) -> Target:
    if math.isnan(seconds):
        return Target(name, f"≤ {limit:g} s", "not measured", None)
    return Target(name, f"≤ {limit:g} s", f"{seconds:.2f} s", seconds <= limit)


def _targets_for(ix: _Index, data: str) -> Iterator[Target]:
    cold = ix.wall(f"{data}.sync.cold")
    read = min(ix.wall(f"{data}.read.requests"), ix.wall(f"{data}.read.curl"))
    skopeo_dir = ix.wall(f"{data}.skopeo.dir")
    r = skopeo_dir / cold
    yield _ratio_target(
        f"{data}: cold vs skopeo→dir", "≥ 3× faster", r, r >= 3,
        f"skopeo {skopeo_dir:.2f}s / syncworker {cold:.2f}s",
    )  # fmt: skip
    r = cold / read
    yield _ratio_target(
        f"{data}: cold vs read limit", "≤ 1.5× the read limit", r, r <= 1.5,
        f"syncworker {cold:.2f}s / read limit {read:.2f}s",
    )  # fmt: skip
    noop, skopeo_noop = ix.wall(f"{data}.sync.noop"), ix.wall(f"{data}.skopeo.noop")
    r = skopeo_noop / noop
    yield _ratio_target(
        f"{data}: no-op vs skopeo no-op", "≥ 5× faster", r, r >= 5,
        f"skopeo {skopeo_noop:.2f}s / syncworker {noop:.2f}s",
    )  # fmt: skip
    yield _noop_requests(ix.get(f"{data}.sync.noop"), data)
    yield from _registry_targets(ix, data)


def _registry_targets(ix: _Index, data: str) -> Iterator[Target]:
    """Into a registry, against skopeo sync into a registry (the same kind of destination)."""
    for run, wanted, factor in (("cold", "≥ 2× faster", 2), ("noop", "≥ 5× faster", 5)):
        ours, skopeo = ix.wall(f"{data}.registry.{run}"), ix.wall(f"{data}.skopeo.{run}")
        r = skopeo / ours
        yield _ratio_target(
            f"{data}: → registry {run} vs skopeo → registry", wanted, r, r >= factor,
            f"skopeo {skopeo:.2f}s / syncworker {ours:.2f}s",
        )  # fmt: skip


def _noop_requests(m: Measurement | None, data: str) -> Target:
    name, wanted = f"{data}: no-op requests", "≤ 1 per tag + pagination"
    if not m or not m.samples:
        return Target(name, wanted, "not measured", None)
    handlers = m.samples[-1].traffic.by_handler
    paging = sum(v for k, v in handlers.items() if k in ("get catalog", "get tags", "get base"))
    per_tag = m.samples[-1].traffic.requests - paging
    return Target(
        name, wanted, f"{per_tag} per-tag requests for {m.tags} tags (+{paging} pagination)",
        per_tag <= m.tags,
    )  # fmt: skip


def _blobs_once(measurements: list[Measurement]) -> Iterator[Target]:
    for m in measurements:
        copies = (".sync.cold", ".registry.cold", ".workers.", ".incremental")
        if not any(kind in m.key for kind in copies):
            continue
        gets = [s.traffic.blob_gets for s in m.samples]
        got = [s.traffic.blob_bytes for s in m.samples]
        expected = m.params.get("expected") or [[m.unique_blobs, m.unique_bytes]] * len(gets)
        ok = [[g, b] for g, b in zip(gets, got, strict=True)] == expected
        yield Target(
            f"blobs once: {m.key}", f"{m.unique_blobs} GETs, {m.unique_bytes / MIB:.1f} MiB",
            f"GETs {sorted(set(gets))}, {sorted({round(b / MIB, 1) for b in got})} MiB", ok,
        )  # fmt: skip


def _lean_targets(ix: _Index) -> Iterator[Target]:
    ours, reader = ix.cpu_per_blob("small.sync.cold"), ix.cpu_per_blob("small.read.requests")
    r = ours / reader
    yield _ratio_target(
        "small cold: CPU per blob vs the `requests` reader's", "≤ 2×", r, r <= 2,
        f"syncworker {ours:.1f} ms / reader {reader:.1f} ms",
    )  # fmt: skip
    # No target: what a mirror cannot avoid (hashing and writing the bytes) apart from the rest.
    copier = ix.cpu_per_blob("small.read.copy")
    r = ours / copier
    yield _ratio_target(
        "small cold: CPU per blob vs a plain copier's (reference)", "—", r, None,
        f"syncworker {ours:.1f} ms / copier {copier:.1f} ms",
    )  # fmt: skip
    yield _seconds_target(
        "CPU of a no-op sync, 1 repository, 1 tag", ix.cpu("one.sync.noop"), STARTUP_CPU
    )
    yield _seconds_target(
        "1,000-tag repository, no-op, +20 ms", ix.wall("tags1000.sync.noop.20ms"), MANY_TAGS_WALL
    )
    cold = ix.wall("small.sync.cold.pinned")
    read = min(ix.wall("small.read.requests.pinned"), ix.wall("small.read.curl.pinned"))
    r = cold / read
    yield _ratio_target(
        "small cold vs read limit, registry and mirror on a core each", "≤ 1.5×", r, r <= 1.5,
        f"syncworker {cold:.2f}s / read limit {read:.2f}s",
    )  # fmt: skip


def evaluate_targets(measurements: list[Measurement]) -> list[Target]:
    ix = _Index(measurements)
    targets = [*_lean_targets(ix), *_targets_for(ix, "small"), *_targets_for(ix, "big")]
    huge = ix.get("huge.sync.cold")
    if huge and huge.samples:
        rss = max(s.peak_rss for s in huge.samples)
        targets.append(
            Target("1 GiB blob: peak RSS", "< 100 MB", f"{rss / 10**6:.0f} MB", rss < RSS_LIMIT)
        )
    one, four = ix.wall("small.workers.1.20ms"), ix.wall("small.workers.4.20ms")
    r = one / four
    targets.append(
        _ratio_target("4 vs 1 workers, +20 ms", "≥ 3.5×", r, r >= 3.5, f"{one:.2f}s / {four:.2f}s")
    )
    targets.extend(_blobs_once(measurements))
    return targets


def _fmt_row(m: Measurement) -> str:
    lo, hi = m.spread()
    return (
        f"| `{m.key}` | {m.label} | {m.median('wall'):.2f} ({lo:.2f}–{hi:.2f}) "
        f"| {m.median('cpu'):.2f} | {_fmt_ms(_cpu_per_blob(m))} | {m.median('server_cpu'):.1f} "
        f"| {m.median('requests'):.0f} | {m.median('blob_gets'):.0f} / {m.unique_blobs} "
        f"| {m.median('blob_bytes') / MIB:.1f} / {m.unique_bytes / MIB:.1f} "
        f"| {m.median('peak_rss') / MIB:.0f} | {m.median('load'):.1f} |"
    )


def _fmt_ms(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.1f}"


def _met(flag: bool | None) -> str:
    return {True: "**met**", False: "**not met**", None: "—"}[flag]


def write_report(path: Path, meta: dict[str, Any], measurements: list[Measurement]) -> None:
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python -m bench` (see docs/BENCHMARKS.md). Do not edit by hand: "
        "the analysis lives in `bench/findings.md` and is appended below.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in meta.items()),
        "",
        "## Targets",
        "",
        "| target | wanted | measured | |",
        "|---|---|---|---|",
        *(
            f"| {t.name} | {t.wanted} | {t.measured} | {_met(t.met)} |"
            for t in evaluate_targets(measurements)
        ),
        "",
        f"## Measurements (medians of {meta.get('repetitions', '?')}; wall time min–max)",
        "",
        "| key | what | wall s | CPU s | CPU ms / blob | registry CPU s | upstream requests "
        "| blob GETs / unique | MiB downloaded / unique | peak RSS MiB | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(_fmt_row(m) for m in measurements),
        "",
        "Requests by handler (last repetition):",
        "",
        *(
            f"- `{m.key}`: "
            + ", ".join(f"{k} {v}" for k, v in sorted(m.samples[-1].traffic.by_handler.items()))
            for m in measurements
            if m.samples
        ),
        "",
    ]
    if any(".workers." in m.key for m in measurements):
        lines += ["## Worker scaling", "", "![worker scaling](workers.png)", ""]
    if FINDINGS.exists():
        lines += [FINDINGS.read_text().rstrip(), ""]
    lines += scale_section(measurements) or existing_section(path)
    for markers in KEPT_SECTIONS:  # each written by a bench module of its own
        kept = existing(path, *markers)
        lines += ["", *kept] if kept else []
    path.write_text("\n".join(lines))


def plot_workers(path: Path, measurements: list[Measurement]) -> bool:
    """Wall time and speed-up against worker count, one line per added latency; nothing
    (and no matplotlib needed) when the workers were not measured."""
    series: dict[int, list[tuple[int, float]]] = {}
    for m in measurements:
        if ".workers." in m.key and m.samples:
            series.setdefault(m.params["latency_ms"], []).append(
                (m.params["workers"], m.median("wall"))
            )
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    fig, (walls, speedups) = plt.subplots(1, 2, figsize=(10, 4))
    for ms, points in sorted(series.items()):
        points.sort()
        counts, times = [p[0] for p in points], [p[1] for p in points]
        walls.plot(counts, times, marker="o", label=f"+{ms} ms/request")
        speedups.plot(counts, [times[0] / t for t in times], marker="o", label=f"+{ms} ms/request")
    embedded = {m.params["latency_ms"]: m.median("wall") for m in measurements
                if m.key.startswith("small.sync.") and "latency_ms" in m.params
                and m.samples}  # fmt: skip
    for ms, wall in sorted(embedded.items()):
        walls.axhline(wall, linestyle=":", color="black", label=f"embedded sync, +{ms} ms")
    top = max(c for points in series.values() for c, _ in points)
    speedups.plot([1, top], [1, top], linestyle="--", color="grey", label="linear")
    walls.set(xlabel="Celery workers", ylabel="wall time, s (median)", title="small set, cold")
    speedups.set(xlabel="Celery workers", ylabel="speed-up vs 1 worker", title="scaling")
    walls.set_ylim(bottom=0)
    speedups.set_ylim(bottom=0)
    for axes in (walls, speedups):
        axes.set_xticks(sorted({c for points in series.values() for c, _ in points}))
        axes.grid(True, alpha=0.3)
        axes.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH_DIR / "out" / "results.json"
    meta, measurements = load_results(source)
    plot_workers(BENCH_DIR / "workers.png", measurements)
    write_report(BENCH_DIR / "RESULTS.md", meta, measurements)


if __name__ == "__main__":
    main()
