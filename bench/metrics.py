"""Upstream traffic from the registry's own Prometheus counters, as a before/after difference.

The registry counts what every client did, whatever the client is (skopeo, syncworker, the
read-limit reader), so the same numbers compare all of them. Handler labels are listed in
`tests/support/registry_server.py`. Bytes come from `registry_http_response_size_bytes_sum`,
a histogram distribution 2.8 keeps per handler.
"""

from __future__ import annotations

import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from bench.proc import tree_cpu
from tests.support.registry_server import RegistryServer

__all__ = ["Traffic", "TrafficMeter"]

_SIZE_SUM = "registry_http_response_size_bytes_sum{"


def _response_bytes(text: str) -> dict[str, float]:
    """handler -> response bytes served so far."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(_SIZE_SUM):
            labels, _, value = line[len(_SIZE_SUM) :].rpartition("} ")
            handler = labels.partition('handler="')[2].partition('"')[0]
            sums[handler] = sums.get(handler, 0.0) + float(value)
    return sums


@dataclass(frozen=True)
class Traffic:
    """Requests served by one registry between two snapshots."""

    requests: int
    blob_gets: int
    blob_bytes: int
    by_handler: dict[str, int] = field(default_factory=dict)
    server_cpu: float = 0.0  # CPU seconds the registry process used serving them

    def __add__(self, other: Traffic) -> Traffic:
        merged = Counter(self.by_handler)
        merged.update(other.by_handler)
        return Traffic(
            self.requests + other.requests,
            self.blob_gets + other.blob_gets,
            self.blob_bytes + other.blob_bytes,
            dict(merged),
            self.server_cpu + other.server_cpu,
        )


class TrafficMeter:
    """`with TrafficMeter(registry) as meter: ...` then `meter.traffic`."""

    def __init__(self, registry: RegistryServer) -> None:
        self._registry = registry
        self._before: tuple[Counter[str], int, float] | None = None
        self._cpu_before = 0.0
        self.traffic = Traffic(0, 0, 0)

    def _snapshot(self) -> tuple[Counter[str], int, float]:
        by_handler: Counter[str] = Counter()
        for key, value in self._registry.metrics().items():
            by_handler[f"{key.method} {key.handler}"] += int(value)
        with urllib.request.urlopen(self._registry.metrics_url, timeout=10) as response:
            blob_bytes = _response_bytes(response.read().decode()).get("blob", 0.0)
        return by_handler, by_handler["get blob"], blob_bytes

    def _server_cpu(self) -> float:
        proc = getattr(self._registry, "_proc", None)  # RegistryServer keeps no public pid
        return tree_cpu([proc.pid]) if proc is not None else 0.0

    def __enter__(self) -> TrafficMeter:
        self._before = self._snapshot()
        self._cpu_before = self._server_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._before is not None
        handlers, gets, size = self._snapshot()
        before_handlers, before_gets, before_size = self._before
        diff = handlers - before_handlers
        server_cpu = self._server_cpu() - self._cpu_before
        self.traffic = Traffic(
            sum(diff.values()), gets - before_gets, int(size - before_size), dict(diff), server_cpu
        )
