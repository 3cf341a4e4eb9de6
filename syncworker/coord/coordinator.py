"""The :class:`Coordinator`: one object per process for everything syncworker keeps in Redis."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from syncworker.coord.catalogwalkstate import CatalogWalks
from syncworker.coord.claims import Claims
from syncworker.coord.deliveries import Deliveries
from syncworker.coord.hints import Hints
from syncworker.coord.keys import Keys
from syncworker.coord.redisbudget import (
    RedisPaidManifests,
    RedisPullBudget,
    RedisPullBudgets,
)
from syncworker.coord.redisclient import describe_client, redact_url, redis_errors
from syncworker.coord.redislimits import RedisBandwidth, RedisLimiter, RedisLimits
from syncworker.coord.redislocks import RedisLocks
from syncworker.coord.requests import Requests, RequestStatus
from syncworker.coord.runstate import FINISHED, RunFailure, Runs, RunStatus, RunTotals
from syncworker.errors import ConfigError, CoordError
from syncworker.waits import LOCK_TTL, RUNS_KEPT, LockWaits

__all__ = ["Coordinator"]

# A worker that cannot reach Redis should say so within seconds, not hang a task.
CONNECT_TIMEOUT = 5.0
# No command of ours blocks server-side, so any reply slower than this is a dead link.
SOCKET_TIMEOUT = 10.0
# Ride out a Redis restart or failover of a few seconds before giving up with CoordError.
RETRIES = 3
RETRY_BACKOFF = ExponentialBackoff(cap=2.0, base=0.2)
# Ping idle pooled connections before use so that one dropped by a restart is replaced.
HEALTH_CHECK_INTERVAL = 30


class Coordinator:
    """Locks and single-flights (the engine's ``Locks``), catalog walks, run state,
    upstream rate budgets (the registry client's ``Limiters``), a registry destination's
    blob hints and claims, the HTTP API's requests, and the starts of each task's work, in
    Redis: eight parts sharing one client and key schema, each method delegated to one.

    Thread-safe (redis-py's client pools its connections): share one per process; its one
    keeper thread re-arms every lock the process holds.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "syncworker",
        *,
        where: str | None = None,
        waits: LockWaits = LockWaits(),  # noqa: B008 - frozen, so shared safely
        lock_ttl: float = LOCK_TTL,
        runs_kept: int = RUNS_KEPT,
    ) -> None:
        self._client = client
        self._keys = Keys(prefix)
        self._where = where if where is not None else describe_client(client)
        self.waits = waits
        self._locks = RedisLocks(client, self._keys, self._where, waits, lock_ttl)
        self._runs = Runs(client, self._keys, self._where, runs_kept)
        self._walks = CatalogWalks(client, self._keys, self._where)
        self._deliveries = Deliveries(client, self._keys, self._where)
        self._limits = RedisLimits(client, self._keys, self._where)
        self._budgets = RedisPullBudgets(client, self._keys, self._where)
        self._hints = Hints(client, self._keys, self._where)
        self._requests = Requests(client, self._keys, self._where)
        self._claims = Claims(client, self._keys, self._where)
        # The engine's Locks, as RedisLocks implements them (coord/redislocks.py).
        self.repo_lock = self._locks.repo_lock
        self.blob_flight = self._locks.blob_flight
        self.image_flight = self._locks.image_flight

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "syncworker",
        *,
        waits: LockWaits = LockWaits(),  # noqa: B008 - frozen, so shared safely
        lock_ttl: float = LOCK_TTL,
        runs_kept: int = RUNS_KEPT,
    ) -> Coordinator:
        """Connect to ``redis://``, ``rediss://`` or ``unix://`` (nothing is sent yet)."""
        try:
            client = redis.Redis.from_url(
                url,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                health_check_interval=HEALTH_CHECK_INTERVAL,
                retry=Retry(RETRY_BACKOFF, RETRIES),
            )
        except ValueError:
            # urllib's message may quote a piece of a password holding a raw "/" or ":" (as a
            # port or a host), so it is neither shown nor chained.
            raise ConfigError(
                "syncworker.redis",
                f"bad Redis URL {redact_url(url)} (percent-encode '@', ':' and '/' in a password)",
            ) from None
        return cls(
            client,
            prefix,
            where=redact_url(url),
            waits=waits,
            lock_ttl=lock_ttl,
            runs_kept=runs_kept,
        )

    @property
    def client(self) -> redis.Redis:
        """The underlying client, for Celery/RedBeat wiring and tests."""
        return self._client

    @property
    def prefix(self) -> str:
        return self._keys.prefix

    def ping(self) -> None:
        """Raise :class:`CoordError` (naming the redacted URL) unless Redis answers."""
        with redis_errors(self._where):
            self._client.ping()

    def close(self) -> None:
        """Stop the keeper and close pooled connections (both come back if used again).
        Call it with no lock held."""
        self._locks.keeper.stop()
        self._client.close()

    def __repr__(self) -> str:
        return f"Coordinator({self._where!r}, prefix={self.prefix!r})"

    # -- runs (coord/runstate.py) ----------------------------------------------------------

    def start_run(self, registry: str, run_id: str | None = None) -> str:
        """Create a run (idempotent for an existing ``run_id``) and return its id."""
        return self._runs.start_run(registry, run_id)

    def incr(
        self,
        run_id: str,
        once_for: str | None = None,
        failures: Sequence[RunFailure] = (),
        clear_live: bool = False,
        **counters: int,
    ) -> bool:
        """Add to the run's counters and keep ``failures``; see :meth:`Runs.incr`."""
        return self._runs.incr(run_id, once_for, failures, clear_live, **counters)

    def note_live(self, run_id: str, repo: str, counts: dict[str, int]) -> bool:
        """Set ``repo``'s counts so far in the run; see :meth:`Runs.note_live`."""
        return self._runs.note_live(run_id, repo, counts)

    def run_totals(self) -> dict[str, RunTotals]:
        """Runs started and finished per registry, and each one's last success."""
        return self._runs.totals()

    def record_failure(self, run_id: str, upstream_repo: str, tag: str | None, reason: str) -> None:
        """Keep why ``upstream_repo`` (or one tag of it) failed; redacted and capped."""
        self._runs.record_failure(run_id, upstream_repo, tag, reason)

    def finish_run(self, run_id: str, state: str = FINISHED) -> None:
        """End the run (the first call decides the state) and keep it RUN_RETENTION."""
        self._runs.finish_run(run_id, state)

    def note_deferred(self, run_id: str, repo: str, tags: int, refill_at: float) -> None:
        """See :meth:`Runs.note_deferred`."""
        self._runs.note_deferred(run_id, repo, tags, refill_at)

    def note_walk_retry(self, run_id: str, note: str | None) -> None:
        """See :meth:`Runs.note_walk_retry`."""
        self._runs.note_walk_retry(run_id, note)

    def walked(self, run_id: str) -> bool:
        """Whether everything ``run_id`` covers was fanned out (:meth:`end_walk`)."""
        return self._runs.walked(run_id)

    def run_status(self, run_id: str) -> RunStatus | None:
        """The run's status, or None if there is no such run (or it expired)."""
        return self._runs.run_status(run_id)

    def runs(self, limit: int = 20) -> list[RunStatus]:
        """Recent runs, newest first."""
        return self._runs.recent(limit)

    # -- catalog walks (coord/catalogwalkstate.py) ------------------------------------------

    def begin_walk(self, registry: str, run_id: str) -> bool:
        """Claim the registry's walk for ``run_id``; False if a walk is already in progress."""
        return self._walks.begin_walk(registry, run_id)

    def current_walk(self, registry: str) -> str | None:
        """The run id of the walk in progress for ``registry``, if any."""
        return self._walks.current_walk(registry)

    def cursor(self, registry: str) -> str | None:
        """The last catalog entry whose page was fully enqueued; None at the start."""
        return self._walks.cursor(registry)

    def advance_cursor(self, registry: str, expected: str | None, new: str | None) -> bool:
        """Compare-and-set the cursor; see :meth:`CatalogWalks.advance_cursor`."""
        return self._walks.advance_cursor(registry, expected, new)

    def mark_enqueued(self, run_id: str, *repos: str) -> int:
        """Mark ``repos`` fanned out in ``run_id``; how many were new (each new one is counted
        in the run's total)."""
        return self._walks.mark_enqueued(run_id, *repos)

    def not_enqueued(self, run_id: str, repos: Sequence[str]) -> list[str]:
        """Those of ``repos`` not yet marked by :meth:`mark_enqueued` in ``run_id``."""
        return self._walks.not_enqueued(run_id, repos)

    def counted(self, run_id: str, repos: Sequence[str]) -> set[str]:
        """Those of ``repos`` already counted in ``run_id``."""
        return self._walks.counted(run_id, repos)

    def uncounted(self, run_id: str) -> list[str]:
        """Repositories fanned out in ``run_id`` and not yet counted done or failed."""
        return self._walks.uncounted(run_id)

    def end_walk(self, registry: str, run_id: str) -> bool:
        """The catalog is done: clear the walk if ``run_id`` still owns it; see
        :meth:`CatalogWalks.end_walk`."""
        return self._walks.end_walk(registry, run_id)

    def note_cursor(self, run_id: str, previous: str | None, cursor: str) -> bool:
        """See :meth:`CatalogWalks.note_cursor`."""
        return self._walks.note_cursor(run_id, previous, cursor)

    # -- starts of a work that never ended (coord/deliveries.py) ---------------------------

    def delivery_started(self, message_id: str) -> int:
        """See :meth:`Deliveries.delivery_started`."""
        return self._deliveries.delivery_started(message_id)

    def delivery_ended(self, message_id: str) -> None:
        """See :meth:`Deliveries.delivery_ended`."""
        self._deliveries.delivery_ended(message_id)

    # -- upstream rate budgets (coord/redislimits.py) ---------------------------------------

    def limiter(
        self, registry: str, req_per_sec: float | None, max_concurrent: int | None
    ) -> RedisLimiter:
        """The cluster-wide budget of upstream ``registry``; see :class:`RedisLimiter`."""
        return self._limits.limiter(registry, req_per_sec, max_concurrent)

    def pull_budget(self, registry: str, identity: str) -> RedisPullBudget:
        """The cluster-wide pull budget of login ``identity`` on ``registry``."""
        return self._budgets.pull_budget(registry, identity)

    def paid_manifests(self, registry: str) -> RedisPaidManifests:
        """The manifests ``registry``'s pull budget was spent on, kept for the cluster."""
        return self._budgets.paid_manifests(registry)

    def bandwidth(self, registry: str, bytes_per_sec: int) -> RedisBandwidth:
        """The cluster-wide download rate cap of ``registry``; see :class:`RedisBandwidth`."""
        return self._limits.bandwidth(registry, bytes_per_sec)

    # -- blob hints of a registry destination (coord/hints.py) -------------------------

    def blob_hint(self, registry: str, digest: str) -> str | None:
        """A repository of the destination ``registry`` (host:port) holding ``digest``."""
        return self._hints.blob_hint(registry, digest)

    def set_blob_hint(self, registry: str, digest: str, repo: str) -> None:
        self._hints.set_blob_hint(registry, digest, repo)

    # -- requests of the HTTP API (coord/requests.py) -------------------------------------

    def open_request(
        self, task_id: str, kind: str, registry: str, repo: str, reference: str | None = None
    ) -> None:
        """Record the API's request ``task_id`` as queued, before its task is sent."""
        self._requests.open(task_id, kind, registry, repo, reference)

    def forget_request(self, task_id: str) -> None:
        """Drop a request whose task could not be sent."""
        self._requests.forget(task_id)

    @contextmanager
    def sending_request(
        self, task_id: str, kind: str, registry: str, repo: str, reference: str | None = None
    ) -> Iterator[None]:
        """The request opened before its task is sent inside (a worker may take it at
        once), and forgotten if sending fails: its caller gets an error, not an id."""
        self.open_request(task_id, kind, registry, repo, reference)
        try:
            yield
        except CoordError:
            with suppress(CoordError):  # Redis down: the request expires by itself
                self.forget_request(task_id)
            raise

    def move_request(self, task_id: str, state: str, result: dict[str, Any] | None = None) -> bool:
        """Move an open request along; see :meth:`Requests.move`."""
        return self._requests.move(task_id, state, result)

    def request_status(self, task_id: str) -> RequestStatus | None:
        """The API's request ``task_id``, or None (unknown or expired)."""
        return self._requests.status(task_id)

    # -- claims of a registry destination's repositories (coord/claims.py) -----------------

    def claim_destination(self, registry: str, repo: str, source: str) -> str:
        """See :meth:`Claims.claim_destination`."""
        return self._claims.claim_destination(registry, repo, source)

    def destination_claimant(self, registry: str, repo: str) -> str | None:
        return self._claims.destination_claimant(registry, repo)

    def release_destination(self, registry: str, repo: str, source: str) -> None:
        """See :meth:`Claims.release_destination`."""
        self._claims.release_destination(registry, repo, source)
