"""What a run of ``syncworker sync`` has done so far, counted from the engine's events, and
its live display on a terminal (rich; imported only for a terminal)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from syncworker.engine import Failure, RepoResult
from syncworker.engine.events import BlobOutcome, WaitKind
from syncworker.registry.stats import RequestHook

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

__all__ = ["LiveDisplay", "Progress", "RegistryProgress"]

# The repositories in flight shown at once; more are summed as "+N".
SHOWN_IN_FLIGHT = 8
# Redraws per second: smooth enough, and cheap next to the copying.
REFRESH_PER_SECOND = 4


@dataclass
class RegistryProgress:
    repos_done: int = 0
    repos_failed: int = 0
    copied: int = 0
    unchanged: int = 0
    failed: int = 0
    bytes: int = 0
    in_flight: set[str] = field(default_factory=set)


class Progress:
    """Counts per registry, thread-safe; ``on_failure`` is told of each failure as it comes."""

    def __init__(self, on_failure: Callable[[Failure], None] | None = None) -> None:
        self.started = time.monotonic()
        self.registries: dict[str, RegistryProgress] = {}
        self._on_failure = on_failure
        self._lock = threading.Lock()

    def _of(self, registry: str) -> RegistryProgress:
        return self.registries.setdefault(registry, RegistryProgress())

    def requests(self, registry: str) -> RequestHook | None:
        return None

    def repo_started(self, registry: str, repo: str) -> None:
        with self._lock:
            self._of(registry).in_flight.add(repo)

    def repo_done(self, result: RepoResult, seconds: float) -> None:
        with self._lock:
            counts = self._of(result.registry)
            counts.in_flight.discard(result.upstream_repo)
            counts.repos_done += 1
            counts.repos_failed += not result.ok
            counts.copied += len(result.copied)
            counts.unchanged += len(result.skipped)
            counts.failed += sum(1 for f in result.failures if f.tag)
        if self._on_failure is not None:
            for failure in result.failures:
                self._on_failure(failure)

    def blob_done(self, registry: str, outcome: BlobOutcome, size: int, seconds: float) -> None:
        if outcome == "fetched":
            with self._lock:
                self._of(registry).bytes += size

    def waited(self, registry: str, kind: WaitKind, seconds: float) -> None:
        pass

    def snapshot(self) -> dict[str, RegistryProgress]:
        with self._lock:
            return {
                name: RegistryProgress(**{**vars(p), "in_flight": set(p.in_flight)})
                for name, p in self.registries.items()
            }


class LiveDisplay:
    """One table, redrawn in place on the terminal ``stream``: per registry the repositories
    done, the images copied/unchanged/failed, bytes fetched and their rate, and those in
    flight (``size`` writes bytes for people). Failures are printed above it as they come."""

    def __init__(self, stream: TextIO, size: Callable[[int], str]) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=stream)
        self._console = console
        self._size = size
        self.progress = Progress(on_failure=self._failed)
        self._live: Live = Live(
            _Renderable(self), console=console, refresh_per_second=REFRESH_PER_SECOND
        )

    def __enter__(self) -> LiveDisplay:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def _failed(self, failure: Failure) -> None:
        self._console.print(f"[red]FAILED[/red] {failure}", markup=True, highlight=False)

    def table(self) -> RenderableType:
        from rich.table import Table

        elapsed = max(time.monotonic() - self.progress.started, 1e-6)
        table = Table(title=f"syncworker sync: {elapsed:.0f}s", title_justify="left")
        for column in ("registry", "repos", "copied", "unchanged", "failed", "fetched", "rate"):
            table.add_column(column, justify="left" if column == "registry" else "right")
        table.add_column("in flight")
        for name, p in sorted(self.progress.snapshot().items()):
            flight = sorted(p.in_flight)
            shown = ", ".join(flight[:SHOWN_IN_FLIGHT])
            if len(flight) > SHOWN_IN_FLIGHT:
                shown += f" +{len(flight) - SHOWN_IN_FLIGHT}"
            table.add_row(
                name,
                f"{p.repos_done} ({p.repos_failed} failed)",
                str(p.copied),
                str(p.unchanged),
                str(p.failed),
                self._size(p.bytes),
                f"{self._size(int(p.bytes / elapsed))}/s",
                shown,
            )
        return table


class _Renderable:
    """Asks the display for a fresh table at each refresh."""

    def __init__(self, display: LiveDisplay) -> None:
        self._display = display

    def __rich__(self) -> RenderableType:
        return self._display.table()
