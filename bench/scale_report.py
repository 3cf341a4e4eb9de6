"""The scale set's section of bench/RESULTS.md, between two markers.

A run of the scale set alone (``--sets scale``) replaces only that section, so the other
sets' figures stay; a run without it keeps the section that is there.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.results import Measurement
from bench.sections import existing, splice

__all__ = [
    "SECTION_END",
    "SECTION_START",
    "existing_section",
    "run_note",
    "scale_section",
    "splice_scale_section",
]

SECTION_START = "<!-- scale set: start -->"
SECTION_END = "<!-- scale set: end -->"
# The targets of the scale set, as (what, wanted, measured value, met).
WALK_PAGE_TARGET = 0.5
CPU_MS_TARGET = 5.0
COMMANDS_TARGET = 12.0
RETAINED_TARGET = 60.0
STATUS_TARGET = 1.0


def _get(measurements: list[Measurement], key: str) -> Measurement | None:
    return next((m for m in measurements if m.key == key), None)


def _param(m: Measurement | None, name: str) -> Any:
    return None if m is None else m.params.get(name)


def _full_pages(m: Measurement | None) -> list[float]:
    pages: list[float] = list(_param(m, "walk_pages") or [])
    return pages[:-1] or pages  # the last page is the short one (or empty: the catalog's end)


def _total_commands(m: Measurement | None) -> float | None:
    if m is None:
        return None
    return float(m.params["commands_per_repo"] + m.params["broker_commands_per_repo"])


def _target(what: str, wanted: str, value: float | None, limit: float, unit: str) -> str:
    if value is None:
        return f"| {what} | {wanted} | — | — |"
    met = "**met**" if value <= limit else "**not met**"
    return f"| {what} | {wanted} | {value:.2f}{unit} | {met} |"


def _targets(ms: list[Measurement]) -> list[str]:
    noop = _get(ms, "scale.workers.noop")
    walk = _get(ms, "scale.walk")
    alone = _full_pages(walk)
    in_runs = _full_pages(_get(ms, "scale.workers.cold")) + _full_pages(noop)
    retained = _get(ms, "scale.retained")
    status = _get(ms, "scale.status")
    status_wall = status.samples[0].wall if status and status.samples else None
    return [
        "| target | wanted | measured | |",
        "|---|---|---|---|",
        _target("walk: s to fan out 1,000 repositories (slowest page, walk alone)", "≤ 0.5 s",
                max(alone) if alone else None, WALK_PAGE_TARGET, " s"),
        _target("… CPU seconds of the walk's process for that (largest of the pages)", "≤ 0.5 s",
                max(_param(walk, "walk_cpu") or [0]) if walk else None, WALK_PAGE_TARGET, " s"),
        _target("… the same in the runs, sharing 2 cores with 4 syncing processes", "≤ 0.5 s",
                statistics.median(in_runs) if in_runs else None, WALK_PAGE_TARGET, " s"),
        _target("worker CPU per repository, no-op", "≤ 5 ms",
                _param(noop, "cpu_ms_per_repo"), CPU_MS_TARGET, " ms"),
        _target("Redis commands per repository, no-op: coordination and broker in one Redis",
                "≤ 12", _total_commands(noop), COMMANDS_TARGET, ""),
        _target("… of them, coordination (a broker elsewhere: RabbitMQ, another Redis)",
                "≤ 12", _param(noop, "commands_per_repo"), COMMANDS_TARGET, ""),
        _target(f"Redis bytes per repository after {_param(retained, 'runs')} runs", "≤ 60",
                _param(retained, "per_repo"), RETAINED_TARGET, " B"),
        _target(f"`status` with {_param(status, 'runs')} finished runs (the command)", "≤ 1 s",
                status_wall, STATUS_TARGET, " s"),
        _target("… of it, reading the runs from Redis", "≤ 1 s",
                _param(status, "read_s"), STATUS_TARGET, " s"),
    ]  # fmt: skip


def _row(m: Measurement) -> str:
    sample = m.samples[0]
    pages = _full_pages(m)
    page = f"{max(pages):.2f}" if pages else "—"
    commands = m.params.get("commands_per_repo") or 0
    broker = m.params.get("broker_commands_per_repo") or 0
    redis_us = m.params.get("redis_us_per_repo") or 0
    return (
        f"| `{m.key}` | {m.label} | {sample.wall:.1f} | {m.params['cpu_ms_per_repo']:.2f} "
        f"| {sample.traffic.requests / m.params['repos']:.2f} "
        f"| {commands:.1f} + {broker:.1f} | {redis_us:.0f} | {page} |"
    )


def _commands(m: Measurement, which: str) -> str:
    counts = sorted((m.params.get(which) or {}).items(), key=lambda kv: -kv[1])
    repos = m.params["repos"]
    what = "broker" if which.startswith("broker") else "coordination"
    listed = ", ".join(f"{name} {n / repos:.2f}" for name, n in counts if n / repos >= 0.01)
    return f"- `{m.key}`, {what}: {listed}"


def _walk_lines(m: Measurement | None) -> list[str]:
    if m is None:
        return []
    walls, cpus = m.params["walk_pages"], m.params["walk_cpu"]
    listed = ", ".join(f"{w:.2f} s ({c:.2f} s CPU)" for w, c in zip(walls, cpus, strict=True))
    return [f"The walk alone, page after page of {m.label.split()[-1]}: {listed}.", ""]


def run_note(meta: dict[str, Any]) -> str:
    """When, what and how loaded: the box is shared, so wall times say less than CPU."""
    return (
        f"Run of {meta.get('date')}, commit {meta.get('commit')}, load average "
        f"{meta.get('load average at start')} at start and {meta.get('load average at end')} "
        "at end (on a shared box wall times inflate with the load; CPU seconds and counts do "
        "not)."
    )


def scale_section(measurements: list[Measurement], note: str = "") -> list[str]:
    """The section's lines, markers included; empty without scale measurements."""
    runs = [m for m in measurements if m.key.startswith(("scale.sync.", "scale.workers."))]
    if not runs:
        return []
    repos = runs[0].params["repos"]
    return [
        SECTION_START,
        f"## Scale set: {repos} one-tag repositories of one 4 KiB layer (synthetic registry)",
        "",
        *([note, ""] if note else []),
        *_targets(measurements),
        "",
        "| key | what | wall s | CPU ms / repo | upstream requests / repo "
        "| Redis commands / repo (coordination + broker) | Redis CPU µs / repo "
        "| slowest walk page s |",
        "|---|---|---|---|---|---|---|---|",
        *(_row(m) for m in runs),
        "",
        *_walk_lines(_get(measurements, "scale.walk")),
        "Redis commands per repository, by command (Lua scripts' own included; 0.01 and up):",
        "",
        *(
            _commands(m, which)
            for m in runs
            for which in ("by_command", "broker_by_command")
            if m.params.get(which)
        ),
        "",
        SECTION_END,
    ]


def splice_scale_section(text: str, section: list[str]) -> str:
    """``text`` with its scale section replaced by ``section`` (appended if it had none;
    kept as it is if ``section`` is empty)."""
    return splice(text, section, SECTION_START, SECTION_END)


def existing_section(path: Path) -> list[str]:
    """The scale section of the report at ``path``, to keep across a run without it."""
    return existing(path, SECTION_START, SECTION_END)
