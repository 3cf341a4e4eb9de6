"""Run state in Redis: id, state, timestamps, counters and failures.

A walk's run ends by itself: :meth:`CatalogWalks.end_walk` marks the catalog walked, and the
run becomes ``finished`` at the moment the last fanned-out repository is counted done or
failed (whichever of the two comes last), in the same Lua script as that count, so
``syncworker status`` and ``trigger --wait`` see the truth without polling the queues.

While a repository is in flight its worker keeps its counts so far in the run's live hash
(:meth:`Runs.note_live`, a field per repository); the count of the repository's result
deletes that field in the same script, and a reader adds the live fields to the counters,
so images are counted as they end and never twice. Starts and ends of runs are also counted
per registry for the whole cluster (:meth:`Runs.totals`), for the metrics.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from syncworker.coord.keys import MAX_FAILURES, RUN_RETENTION, RUN_TTL, Keys
from syncworker.coord.redisclient import LuaArg, Part, redact, text, translated
from syncworker.coord.runskept import forget_finished
from syncworker.coord.scripts import register
from syncworker.waits import RUNS_KEPT

__all__ = [
    "COUNTERS",
    "LIVE_COUNTERS",
    "FAILED",
    "FINISHED",
    "MAX_REASON_CHARS",
    "RECENT_RUNS",
    "RUNNING",
    "RunFailure",
    "RunStatus",
    "RunTotals",
    "Runs",
]

RUNNING, FINISHED, FAILED = "running", "finished", "failed"
COUNTERS = (
    "repos_total",
    "repos_done",
    "repos_failed",
    "repos_skipped",
    "images_copied",
    "images_skipped",
    "images_failed",
    "blobs_fetched",
    "blobs_linked",
    "bytes",
)
# What a repository in flight reports of itself (its live field): images and bytes.
# A run hash's field per repository whose tags a pull budget deferred: ``{tags} {refill}``.
DEFERRED = "deferred:"
# A run hash's field while its catalog walk waits to retry: the error, the try and the wait.
WALK_RETRY = "walk_retry"
LIVE_COUNTERS = ("images_copied", "images_skipped", "images_failed", "bytes")
# Recent runs that `syncworker status` and the REST API list when asked for no number.
RECENT_RUNS = 10
# A failure reason is a one-line cause for `status`, not a traceback.
MAX_REASON_CHARS = 500
# Run ids go into keys and into `syncworker status RUN`: keep them plain.
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def new_run_id() -> str:
    """Sortable and readable: UTC start time, then randomness against collisions."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def _cap_reason(reason: str) -> str:
    reason = redact(" ".join(reason.split()))
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    return reason


def _failure_json(failure: RunFailure) -> str:
    """A failure as the run keeps it: its reason redacted and capped."""
    return json.dumps(
        {"repo": failure.repo, "tag": failure.tag, "reason": _cap_reason(failure.reason)}
    )


@dataclass(frozen=True, slots=True)
class RunFailure:
    """Why one upstream repository (or one tag of it) failed in a run. ``repo`` is the
    upstream repository, or ``(catalog)`` when listing failed; the field keeps the name it
    has in ``syncworker status --json`` and the REST API's run documents."""

    repo: str
    tag: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class RunStatus:
    """A snapshot of one run, as ``syncworker status`` shows it. ``counters`` include
    ``live``: the counts so far of the ``in_flight`` repositories not yet counted."""

    id: str
    registry: str
    state: str
    started: float
    finished: float | None = None
    counters: dict[str, int] = field(default_factory=dict)
    failures: list[RunFailure] = field(default_factory=list)
    live: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    #: Tags an upstream's pull budget deferred in repositories not counted yet, and when
    #: the last of those budgets refills (Unix time).
    deferred_tags: int = 0
    refill_at: float | None = None
    #: Why the catalog walk is waiting to try again, until it goes on (None: it is not).
    walk_retry: str | None = None

    @property
    def total(self) -> int:
        """Repositories fanned out so far (grows while the catalog walk goes on)."""
        return self.counters.get("repos_total", 0)

    @property
    def done(self) -> int:
        """Repositories finished: mirrored, failed or skipped (listed without tags)."""
        c = self.counters
        return c.get("repos_done", 0) + c.get("repos_failed", 0) + c.get("repos_skipped", 0)

    @property
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.time()
        return max(0.0, end - self.started)

    @property
    def rate(self) -> float:
        """Repositories per second since the start."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the current rate; None when unknown, 0 once the run ended."""
        if self.state != RUNNING:
            return 0.0
        rate = self.rate
        if rate <= 0 or self.total <= 0:
            return None
        return max(0, self.total - self.done) / rate

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(done=self.done, total=self.total, rate=self.rate, eta_seconds=self.eta_seconds)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass(frozen=True, slots=True)
class RunTotals:
    """One registry's runs over the cluster's life (as long as Redis keeps them)."""

    started: int = 0
    finished_ok: int = 0
    finished_failed: int = 0
    last_ok: float | None = None  # when the last run without failures finished


def _pairs(flat: list[Any]) -> dict[Any, Any]:
    """A hash as Lua returns HGETALL's answer (field, value, field, value ...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _parse_run(
    run_id: str,
    meta: dict[Any, Any],
    counters: dict[Any, Any],
    failures: list[Any],
    live: list[Any],
) -> RunStatus | None:
    """A run from its keys; ``live``: the live fields of repositories not yet counted."""
    fields = {text(k): text(v) for k, v in meta.items()}
    if not fields.get("started"):
        return None
    finished = fields.get("finished")
    live_sum = dict.fromkeys(LIVE_COUNTERS, 0)
    for raw in live:
        for name, amount in json.loads(raw).items():
            if name in live_sum:
                live_sum[name] += int(amount)
    settled = {str(text(k)): int(v) for k, v in counters.items()}
    deferred = [str(v).split() for k, v in fields.items() if str(k).startswith(DEFERRED)]
    return RunStatus(
        id=run_id,
        registry=fields.get("registry") or "",
        state=fields.get("state") or RUNNING,
        started=float(fields["started"] or 0),
        finished=float(finished) if finished else None,
        counters={k: v + live_sum.get(k, 0) for k, v in settled.items()},
        failures=[RunFailure(**json.loads(raw)) for raw in failures],
        live=live_sum if live else {},
        in_flight=len(live),
        deferred_tags=sum(int(tags) for tags, _ in deferred),
        refill_at=max((float(at) for _, at in deferred), default=None),
        walk_retry=fields.get(WALK_RETRY) or None,
    )


def _parse_totals(stats: dict[Any, Any]) -> dict[str, RunTotals]:
    """``started:{reg}``, ``finished:{reg}:{outcome}`` and ``last_ok:{reg}`` fields."""
    found: dict[str, dict[str, Any]] = {}
    for raw_name, raw_value in stats.items():
        name, value = str(text(raw_name)), str(text(raw_value))
        kind, _, rest = name.partition(":")
        if kind == "finished":
            registry, _, outcome = rest.rpartition(":")
            found.setdefault(registry, {})[f"finished_{outcome}"] = int(value)
        elif kind == "started":
            found.setdefault(rest, {})["started"] = int(value)
        elif kind == "last_ok":
            found.setdefault(rest, {})["last_ok"] = float(value)
    return {registry: RunTotals(**values) for registry, values in sorted(found.items())}


class Runs(Part):
    """Runs: start, count, record failures, finish, read back."""

    def __init__(self, client: redis.Redis, keys: Keys, where: str, kept: int = RUNS_KEPT) -> None:
        super().__init__(client, keys, where)
        self._kept = kept
        self._lua_start = register(self._client, "run_start")
        self._lua_incr = register(self._client, "run_incr")
        self._lua_failure = register(self._client, "run_failure")
        self._lua_finish = register(self._client, "run_finish")
        self._lua_live = register(self._client, "run_live")
        self._lua_read = register(self._client, "run_read")

    def _ending_keys(self, run_id: str) -> list[str]:
        """What a script that may end the run takes: its keys, then the stats hash."""
        return [*self._keys.run_keys(run_id), self._keys.run_stats()]

    @translated
    def start_run(self, registry: str, run_id: str | None = None) -> str:
        """Create a run (idempotent for an existing ``run_id``) and return its id."""
        run_id = run_id or new_run_id()
        if not _RUN_ID.match(run_id):
            raise ValueError(f"invalid run id {run_id[:100]!r}")
        now = time.time()
        keys = [*self._ending_keys(run_id), self._keys.runs()]
        args: list[LuaArg] = [registry, now, _ms(RUN_TTL), now - RUN_TTL, run_id, *COUNTERS]
        if self._lua_start(keys=keys, args=args):
            ended = {FINISHED, FAILED}
            forget_finished(self._client, self._keys, registry, run_id, self._kept, ended)
        return run_id

    @translated
    def incr(
        self,
        run_id: str,
        once_for: str | None = None,
        failures: Sequence[RunFailure] = (),
        clear_live: bool = False,
        **counters: int,
    ) -> bool:
        """Add to the running run's counters (names from COUNTERS) and keep ``failures``, in
        one step that touches only the counters that change; ends a fully walked run when
        the last repository is counted. With ``once_for`` (e.g. the repository), counts only
        the first time that token is seen in this run, so a task redelivered after it
        counted (killed before its ack) cannot finish the run early; ``clear_live`` deletes
        its live counts (:meth:`note_live`) in the same step, counted or not. False when
        nothing was counted (that, or the run is over or gone).
        """
        unknown = set(counters) - set(COUNTERS)
        if unknown:
            raise ValueError(f"unknown run counters: {sorted(unknown)}")
        if once_for == "" or (clear_live and once_for is None):
            raise ValueError("once_for must be a non-empty token (and is, with clear_live)")
        pairs = [
            item for name, amount in counters.items() if amount for item in (name, int(amount))
        ]
        args: list[LuaArg] = [
            time.time(),
            _ms(RUN_RETENTION),
            once_for or "",
            int(clear_live),
            MAX_FAILURES,
            len(failures),
            *(_failure_json(failure) for failure in failures),
            *pairs,
        ]
        return bool(self._lua_incr(keys=self._ending_keys(run_id), args=args))

    @translated
    def note_live(self, run_id: str, repo: str, counts: dict[str, int]) -> bool:
        """Set ``repo``'s counts so far (names from LIVE_COUNTERS) in the running run,
        replacing what it or an earlier delivery set; False, writing nothing, once the run
        is over or gone or ``repo`` is counted."""
        unknown = set(counts) - set(LIVE_COUNTERS)
        if unknown:
            raise ValueError(f"unknown live counters: {sorted(unknown)}")
        args: list[LuaArg] = [repo, json.dumps(counts, sort_keys=True)]
        return bool(self._lua_live(keys=list(self._keys.run_keys(run_id)), args=args))

    @translated
    def note_deferred(self, run_id: str, repo: str, tags: int, refill_at: float) -> None:
        """``repo`` of ``run_id`` has ``tags`` deferred until ``refill_at``; shown by
        :meth:`run_status` until it is counted (the count drops it)."""
        key = self._keys.run(run_id)
        if self._client.exists(key):  # an expired run's hash is not made again
            self._client.hset(key, DEFERRED + repo, f"{tags} {refill_at}")

    @translated
    def note_walk_retry(self, run_id: str, note: str | None) -> None:
        """Why ``run_id``'s catalog walk waits to try again (redacted and capped), shown by
        :meth:`run_status`; None: the walk went on."""
        key = self._keys.run(run_id)
        if note is None:
            self._client.hdel(key, WALK_RETRY)
        elif self._client.exists(key):  # an expired run's hash is not made again
            self._client.hset(key, WALK_RETRY, _cap_reason(note))

    @translated
    def totals(self) -> dict[str, RunTotals]:
        """Runs started and finished per registry, and each one's last success."""
        return _parse_totals(self._client.hgetall(self._keys.run_stats()))

    @translated
    def record_failure(self, run_id: str, upstream_repo: str, tag: str | None, reason: str) -> None:
        """Keep why ``upstream_repo`` (or one tag of it) failed; the reason is redacted and
        capped."""
        failure = RunFailure(upstream_repo, tag, reason)
        args: list[LuaArg] = [_failure_json(failure), MAX_FAILURES]
        self._lua_failure(keys=list(self._keys.run_keys(run_id)), args=args)

    @translated
    def finish_run(self, run_id: str, state: str = FINISHED) -> None:
        """End the run (the first call decides the state) and keep it RUN_RETENTION."""
        if state not in (FINISHED, FAILED):
            raise ValueError(f"a run finishes as {FINISHED!r} or {FAILED!r}, not {state!r}")
        args: list[LuaArg] = [state, time.time(), _ms(RUN_RETENTION)]
        self._lua_finish(keys=self._ending_keys(run_id), args=args)

    @translated
    def walked(self, run_id: str) -> bool:
        """Whether everything ``run_id`` covers was fanned out (``end_walk``)."""
        return bool(self._client.hexists(self._keys.run(run_id), "walked"))

    @translated
    def run_status(self, run_id: str) -> RunStatus | None:
        """The run's status, or None if there is no such run (or it expired)."""
        if not _RUN_ID.match(run_id):
            return None
        return self._read([run_id])[0]

    def _read(self, run_ids: Sequence[str]) -> list[RunStatus | None]:
        """Several runs in one pipeline (redis-py asks ``SCRIPT EXISTS`` before it: two round
        trips), each run read in one step (``lua/run_read.lua``): a repository counted while
        it is read is in its counters or in its live counts, never in neither nor both."""
        with self._client.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                self._lua_read(keys=list(self._keys.run_keys(run_id)), client=pipe)
            replies = pipe.execute()
        return [
            _parse_run(run_id, _pairs(meta), _pairs(counters), failures, live)
            for run_id, (meta, counters, failures, live) in zip(run_ids, replies, strict=True)
        ]

    @translated
    def recent(self, limit: int = 20) -> list[RunStatus]:
        """Recent runs, newest first."""
        ids = [str(text(i)) for i in self._client.zrevrange(self._keys.runs(), 0, limit - 1)]
        found = self._read(ids)
        gone = [run_id for run_id, status in zip(ids, found, strict=True) if status is None]
        if gone:
            self._client.zrem(self._keys.runs(), *gone)
        return [status for status in found if status is not None]
