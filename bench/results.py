"""What one benchmark run measured, kept as data (JSON) so the report can be rebuilt from it."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.metrics import Traffic

__all__ = ["Measurement", "Sample", "load_results", "save_results"]


@dataclass
class Sample:
    """One repetition."""

    wall: float
    peak_rss: int
    traffic: Traffic
    cpu: float | None = None  # CPU seconds (user + system) of the measured process trees
    load: float | None = None  # 1-minute load average after the run: the box is shared


@dataclass
class Measurement:
    """Repetitions of one thing on one data set, with what the data set holds."""

    key: str  # "small.sync.cold": data set, tool, case
    label: str
    unique_blobs: int
    unique_bytes: int
    tags: int
    samples: list[Sample] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # workers, latency_ms, ...

    def median(self, what: str) -> float:
        values = [_value(sample, what) for sample in self.samples]
        return float(statistics.median(values)) if values else float("nan")

    def spread(self) -> tuple[float, float]:
        walls = [sample.wall for sample in self.samples]
        return (min(walls), max(walls)) if walls else (float("nan"), float("nan"))


def _value(sample: Sample, what: str) -> float:
    if what in ("requests", "blob_gets", "blob_bytes", "server_cpu"):
        return float(getattr(sample.traffic, what))
    value = getattr(sample, what)
    return float("nan") if value is None else float(value)


def save_results(path: Path, meta: dict[str, Any], measurements: list[Measurement]) -> None:
    path.write_text(
        json.dumps({"meta": meta, "measurements": [asdict(m) for m in measurements]}, indent=1)
    )


def load_results(path: Path) -> tuple[dict[str, Any], list[Measurement]]:
    data = json.loads(path.read_text())
    measurements = []
    for item in data["measurements"]:
        samples = [Sample(**{**s, "traffic": Traffic(**s["traffic"])}) for s in item.pop("samples")]
        measurements.append(Measurement(**item, samples=samples))
    return data["meta"], measurements
