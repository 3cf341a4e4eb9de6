"""The Redis key schema of syncworker: every key, in one place (docs/ARCHITECTURE.md "Redis").

Every key starts with the prefix (``syncworker`` unless configured), written ``{p}`` below.
Names are used verbatim: registry names come from the configuration, repository names and
tags are validated by ``syncworker.oci`` before they get here, digests stay ``alg:hex``.
A repository name never contains ``:``, so ``{registry}:{repo}:{tag}`` cannot be ambiguous
as long as registry names (configuration keys) do not contain one either.

=========================================  ======  ================  ===============================
key                                        type    owner             TTL
=========================================  ======  ================  ===============================
``{p}:lock:repo:{dest_repo}``              string  redislocks        lock ttl, extended while held
``{p}:flight:blob:{digest}``               string  redislocks        lock ttl, extended while held
``{p}:flight:blob:{digest}:ok``            string  redislocks        LockWaits.recent (a holder
                                                                     finished: the next one
                                                                     re-checks the store)
``{p}:progress:blob:{digest}``             hash    blobflight        lock ttl, from each write; a
                                                                     holder's token (of the flight
                                                                     or a lane) -> ``{bytes}
                                                                     {source}``, ``{token}:alive``
                                                                     -> heartbeats: waiters take
                                                                     over a flight that stands still
``{p}:lane:blob:{digest}:{source}``        string  blobflight        lock ttl, extended while held:
                                                                     one fetch per upstream once a
                                                                     holder of another upstream was
                                                                     too slow
``{p}:flight:image:{reg}:{repo}:{ref}``    string  redislocks        lock ttl, extended while held
``{p}:flight:image:{reg}:{repo}:{ref}:ok`` string  redislocks        LockWaits.recent (Redis TIME in
                                                                     microseconds at which the last
                                                                     successful copy began)
``{p}:hint:blob:{reg}:{digest}``           string  hints.py          BLOB_HINT_TTL; a repository of
                                                                     the destination registry
                                                                     (``{reg}``: its host:port)
                                                                     holding the blob (a hint for
                                                                     mounts; the registry is the
                                                                     truth)
``{p}:claim:{reg}:{dest_repo}``            string  claims.py         none; the source a repository
                                                                     of the destination registry
                                                                     (``{reg}``: its host:port)
                                                                     mirrors, as ``registry/repo``
                                                                     (deleted by hand to move it)
``{p}:runs``                               zset    runstate          none; members are run ids
                                                                     scored by start time, pruned
                                                                     past RUN_TTL on each start_run,
                                                                     with a registry's finished
                                                                     runs past ``runsKept`` (keys
                                                                     and all)
``{p}:run:{id}``                           hash    runstate          RUN_TTL from start, then
                                                                     RUN_RETENTION from its finish;
                                                                     fields registry, state,
                                                                     started, finished, and
                                                                     ``deferred:{repo}`` (``{tags}
                                                                     {refill}``) while a pull budget
                                                                     holds it back
``{p}:run:{id}:counters``                  hash    runstate          same as the run hash; field per
                                                                     counter (COUNTERS), integers
``{p}:run:{id}:failures``                  list    runstate          same as the run hash; JSON
                                                                     ``{repo, tag, reason}``, at
                                                                     most MAX_FAILURES
``{p}:run:{id}:repos``                     hash    catalogwalkstate  the run hash's while it runs;
                                                                     deleted when it finishes.
                                                                     ``sent:{repo}`` (fanned out)
                                                                     and ``done:{repo}`` (counted,
                                                                     runstate), value 1
``{p}:run:{id}:live``                      hash    runstate          the run hash's while it runs;
                                                                     deleted when it finishes. Per
                                                                     repository in flight: its
                                                                     counts so far (JSON, COUNTERS
                                                                     names), rewritten at most about
                                                                     once a second; deleted by the
                                                                     script that counts the
                                                                     repository (a redelivery
                                                                     overwrites its own field)
``{p}:stats:runs``                         hash    runstate          none; per registry, runs
                                                                     ``started:{reg}`` and
                                                                     ``finished:{reg}:{ok|failed}``
                                                                     (counts), and ``last_ok:{reg}``
                                                                     (when the last run without
                                                                     failures finished): a few
                                                                     fields per registry, for the
                                                                     metrics
``{p}:walk:{reg}``                         string  catalogwalkstate  WALK_TTL, refreshed on each
                                                                     cursor advance; the run id of
                                                                     the walk in progress
``{p}:cursor:{reg}``                       string  catalogwalkstate  WALK_TTL; the last catalog
                                                                     entry enqueued by the walk
``{p}:run:{id}:cursors``                   hash    catalogwalkstate  as the repos hash; each cursor
                                                                     reached in this run -> the
                                                                     cursor it was reached from
``{p}:delivery:{message}``                 string  deliveries        DELIVERY_TTL; how many starts
                                                                     of a task message did not end
                                                                     (its worker died under it);
                                                                     ``{message}`` is ``{task
                                                                     id}:{retries}``, or
                                                                     ``run:{id}:{repo}`` for every
                                                                     message of a run's repository
``{p}:api:image:{reg}:{repo}:{ref}``       string  api/              COALESCE_TTL (api/coalesce.py);
                                                                     ``{digest} {task id}`` of the
                                                                     last sync_image it enqueued
``{p}:request:{task_id}``                  hash    requests.py       REQUEST_TTL, re-armed on each
                                                                     change; a task the API sent:
                                                                     kind, registry, repo,
                                                                     reference, state (queued,
                                                                     running, done, failed),
                                                                     created, started, finished,
                                                                     result (the task's, JSON)
``{p}:limit:{reg}:pause``                  string  redislimits       the pause; Redis-time ms until
                                                                     which no request goes out
``{p}:limit:{reg}:next``                   string  redislimits       one turn + 1 s; Redis-time ms
                                                                     of the next free turn
``{p}:limit:{reg}:slots``                  zset    redislimits       SLOT_LEASE, set on each take; a
                                                                     member per request in flight,
                                                                     scored by its lease's end (ms)
``{p}:limit:{reg}:bytes``                  string  redislimits       BURST + 1 s past it; Redis-time
                                                                     ms of the download rate cap's
                                                                     next free instant
``{p}:budget:{reg}:{identity}``            hash    redisbudget       a window + 60 s from each
                                                                     answer (a day: no budget); the
                                                                     pull budget of a login
                                                                     (``{identity}``: its name
                                                                     hashed, ``anonymous`` or
                                                                     ``helper``): remaining (-1:
                                                                     none), limit, window, refill,
                                                                     lowered (when it last fell)
``{p}:budget:{reg}:{identity}:flight``     zset    redisbudget       FLIGHT_LEASE; a member per
                                                                     manifest GET in flight, scored
                                                                     by its lease's end (ms)
``{p}:paid:{reg}:{repo}:{digest}``         hash    redisbudget       KEEP_WINDOWS of the budget's
                                                                     window from its last use; a
                                                                     manifest the pull budget was
                                                                     spent on: ``raw`` (its bytes),
                                                                     ``type`` (the media type its
                                                                     answer named)
``{p}:redbeat``                            prefix  RedBeat           RedBeat's own keys start with
                                                                     it (worker/settings.py hands it
                                                                     over): ``:schedule``,
                                                                     ``:statics``, ``:lock`` and one
                                                                     hash per beat entry, named
                                                                     ``syncworker.walk:{reg}``
=========================================  ======  ================  ===============================
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BLOB_HINT_TTL",
    "DELIVERY_TTL",
    "MAX_FAILURES",
    "REQUEST_TTL",
    "RUN_KEY_COUNT",
    "RUN_RETENTION",
    "RUN_TTL",
    "WALK_TTL",
    "Keys",
]

DAY = 24 * 3600.0
# Finished runs stay visible to `syncworker status` for a week, then Redis drops them, so
# the keyspace does not grow with every nightly run.
RUN_RETENTION = 7 * DAY
# A run that never calls finish_run (its walk died for good) still expires eventually.
RUN_TTL = 14 * DAY
# A walk whose every task was lost unblocks the next trigger after this long; a live walk
# refreshes it on every page, so only an abandoned one ever reaches it.
WALK_TTL = 1 * DAY
# A blob hint names where to mount a blob from; a wrong one costs a refused mount, so it
# may live long, but a registry garbage-collects, so not forever.
BLOB_HINT_TTL = 30 * DAY
# A message started again and again (its worker killed each time) is counted over this long:
# longer than several redeliveries a visibility timeout apart.
DELIVERY_TTL = 2 * DAY
# A caller of the API reads how its request ended for this long after the last change: a
# request may wait behind a night's walk in the queue, and is then read the next morning.
REQUEST_TTL = 1 * DAY
# Failures kept per run: enough to show every failing repo of a large catalog, bounded so a
# registry that fails everything cannot fill Redis.
MAX_FAILURES = 1000
# How many keys Keys.run_keys returns (lua/run_helpers.lua loops over them).
RUN_KEY_COUNT = 6


@dataclass(frozen=True, slots=True)
class Keys:
    """Builds every key name under one prefix."""

    prefix: str = "syncworker"

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # redislocks.py
    def repo_lock(self, dest_repo: str) -> str:
        return self._key("lock", "repo", dest_repo)

    def blob_flight(self, digest: str) -> str:
        return self._key("flight", "blob", digest)

    def blob_lane(self, digest: str, source: str) -> str:
        return self._key("lane", "blob", digest, source)

    def blob_progress(self, digest: str) -> str:
        return self._key("progress", "blob", digest)

    def image_flight(self, registry: str, repo: str, reference: str) -> str:
        return self._key("flight", "image", registry, repo, reference)

    def flight_ok(self, flight_key: str) -> str:
        return f"{flight_key}:ok"

    # hints.py
    def blob_hint(self, registry: str, digest: str) -> str:
        return self._key("hint", "blob", registry, digest)

    # claims.py
    def claim(self, registry: str, dest_repo: str) -> str:
        return self._key("claim", registry, dest_repo)

    # runstate.py
    def runs(self) -> str:
        return self._key("runs")

    def run(self, run_id: str) -> str:
        return self._key("run", run_id)

    def run_counters(self, run_id: str) -> str:
        return self._key("run", run_id, "counters")

    def run_failures(self, run_id: str) -> str:
        return self._key("run", run_id, "failures")

    def run_repos(self, run_id: str) -> str:
        return self._key("run", run_id, "repos")

    def run_live(self, run_id: str) -> str:
        return self._key("run", run_id, "live")

    def run_stats(self) -> str:
        return self._key("stats", "runs")

    def run_keys(self, run_id: str) -> tuple[str, ...]:
        """Every key of one run, RUN_KEY_COUNT of them: they share one TTL. The Lua scripts
        rely on this order (run hash, counters, failures, repos, cursors, live)."""
        return (
            self.run(run_id),
            self.run_counters(run_id),
            self.run_failures(run_id),
            self.run_repos(run_id),
            self.run_cursors(run_id),
            self.run_live(run_id),
        )

    # catalogwalkstate.py
    def walk(self, registry: str) -> str:
        return self._key("walk", registry)

    def cursor(self, registry: str) -> str:
        return self._key("cursor", registry)

    def run_cursors(self, run_id: str) -> str:
        return self._key("run", run_id, "cursors")

    # deliveries.py
    def delivery(self, message_id: str) -> str:
        return self._key("delivery", message_id)

    # api/coalesce.py
    def api_image(self, registry: str, repo: str, reference: str) -> str:
        return self._key("api", "image", registry, repo, reference)

    # requests.py
    def request(self, task_id: str) -> str:
        return self._key("request", task_id)

    # redislimits.py
    def limit_pause(self, registry: str) -> str:
        return self._key("limit", registry, "pause")

    def limit_next(self, registry: str) -> str:
        return self._key("limit", registry, "next")

    def limit_slots(self, registry: str) -> str:
        return self._key("limit", registry, "slots")

    def limit_bytes(self, registry: str) -> str:
        return self._key("limit", registry, "bytes")

    # redisbudget.py
    def budget(self, registry: str, identity: str) -> str:
        return self._key("budget", registry, identity)

    def budget_flight(self, registry: str, identity: str) -> str:
        return self._key("budget", registry, identity, "flight")

    def paid(self, registry: str, repo: str, digest: str) -> str:
        return self._key("paid", registry, repo, digest)

    # worker/settings.py: the prefix RedBeat builds its keys under (it appends to it).
    def redbeat(self) -> str:
        return self._key("redbeat")
