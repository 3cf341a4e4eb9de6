"""What a run of ``syncworker sync`` has done so far, counted from the engine's events, and
its live display on a terminal (rich; imported only for a terminal): per registry the
repositories done of those listed, images counted as each one ends, bytes and rate, and an
ETA once it means something."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from syncworker.engine import Failure, RepoResult
from syncworker.engine.events import BlobOutcome, ImageOutcome, WaitKind
from syncworker.registry.stats import RequestHook

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

__all__ = ["LiveDisplay", "Progress", "RegistryProgress"]

# The repositories in flight shown at once; more are summed as "+N".
SHOWN_IN_FLIGHT = 8
# Redraws per second: smooth enough, and cheap next to the copying.
REFRESH_PER_SECOND = 4
# An ETA is shown once every registry's catalog is listed (the total is known) and this
# many repositories are done: a rate from fewer swings too much to mean anything.
ETA_MIN_DONE = 3


@dataclass
class RegistryProgress:
    repos_listed: int = 0
    listed_all: bool = False  # the catalog's last page is in: repos_listed is the total
    repos_done: int = 0
    repos_failed: int = 0
    copied: int = 0
    unchanged: int = 0
    failed: int = 0
    bytes: int = 0
    in_flight: set[str] = field(default_factory=set)


class Progress:
    """Counts per registry, thread-safe; ``on_failure`` is told of each failure as it
    comes. ``registries``: those the run will walk, so that an ETA waits for all of them."""

    def __init__(
        self,
        on_failure: Callable[[Failure], None] | None = None,
        registries: Collection[str] = (),
    ) -> None:
        self.started = time.monotonic()
        self.registries: dict[str, RegistryProgress] = {r: RegistryProgress() for r in registries}
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
        if self._on_failure is not None:
            for failure in result.failures:
                self._on_failure(failure)

    def image_done(self, registry: str, repo: str, outcome: ImageOutcome, size: int) -> None:
        with self._lock:
            counts = self._of(registry)
            if outcome == "copied":
                counts.copied += 1
            elif outcome == "unchanged":
                counts.unchanged += 1
            else:
                counts.failed += 1

    def repos_listed(self, registry: str, count: int, complete: bool) -> None:
        with self._lock:
            counts = self._of(registry)
            counts.repos_listed += count
            counts.listed_all = complete

    def blob_done(self, registry: str, outcome: BlobOutcome, size: int, seconds: float) -> None:
        if outcome == "fetched":
            with self._lock:
                self._of(registry).bytes += size

    def waited(self, registry: str, kind: WaitKind, seconds: float) -> None:
        pass

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Seconds left at the rate so far (repositories done per second since the start);
        None until every registry is listed and ETA_MIN_DONE repositories are done."""
        with self._lock:
            counts = list(self.registries.values())
        done = sum(c.repos_done for c in counts)
        if not counts or not all(c.listed_all for c in counts) or done < ETA_MIN_DONE:
            return None
        elapsed = (time.monotonic() if now is None else now) - self.started
        left = sum(c.repos_listed for c in counts) - done
        return max(0, left) * elapsed / done

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

    def __init__(
        self, stream: TextIO, size: Callable[[int], str], registries: Collection[str] = ()
    ) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=stream)
        self._console = console
        self._size = size
        self.progress = Progress(on_failure=self._failed, registries=registries)
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

        now = time.monotonic()
        elapsed = max(now - self.progress.started, 1e-6)
        eta = self.progress.eta_seconds(now)
        title = f"syncworker sync: {_duration(int(elapsed))}"
        if eta is not None:
            title += f", ETA {_duration(eta)}"
        table = Table(title=title, title_justify="left")
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
                f"{p.repos_done}/{p.repos_listed}{'' if p.listed_all else '+'} "
                f"({p.repos_failed} failed)",
                str(p.copied),
                str(p.unchanged),
                str(p.failed),
                self._size(p.bytes),
                f"{self._size(int(p.bytes / elapsed))}/s",
                shown,
            )
        return table


def _duration(seconds: float) -> str:
    """``42s``, ``3m07s`` or ``2h05m``: what a person reads at a glance (rounded up, so
    work left never reads as 0s)."""
    whole = math.ceil(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class _Renderable:
    """Asks the display for a fresh table at each refresh."""

    def __init__(self, display: LiveDisplay) -> None:
        self._display = display

    def __rich__(self) -> RenderableType:
        return self._display.table()
