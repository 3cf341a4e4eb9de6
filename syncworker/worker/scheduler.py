"""Beat's scheduler: RedBeat (the schedule in Redis, one firing beat among replicas), with a
lock that beat survives losing.

RedBeat as released takes its lock once at start-up, blocking, and extends it at each tick
with a call that raises when the lock is gone, and beat exits on that exception. Beat sleeps
until the next due time (up to ``beat_max_loop_interval``, 300 s), so any schedule whose
period is longer than the lock timeout loses the lock in its sleep and beat died at its
first wake-up; so did every beat whose Redis restarted or paused. Here instead:

- beat never sleeps longer than a third of the lock timeout (``SLEEPS_PER_LOCK``: derived
  here, from the lock timeout in force, whatever ``beat_max_loop_interval`` says), so a
  running beat renews its lock long before it expires, whatever its schedules;
- each tick renews the lock or tries to take it; a beat that does not hold it stands by
  and tries again at its next tick, and a Redis that does not answer is logged and retried:
  nothing about the lock ends the process;
- a beat fires an entry only after advancing the entry's last run in Redis in the same Lua
  call that checks it holds the lock (``leader.Leadership.write_if_held``), so two beats
  never both fire one due time, even when one was paused past its lock;
- the beat that takes the lock writes the schedule again (Redis may have restarted empty),
  keeping for each entry the later of the last run Redis has and the last this process
  fired, so a schedule lost with Redis does not fire again a walk just sent. What a beat
  remembers is forgotten as soon as it sees another beat hold the lock: that one may have
  fired since, and only Redis knows.
"""

from __future__ import annotations

import enum
import json
import logging
from datetime import datetime
from typing import Any

import redis
from celery.beat import ScheduleEntry
from redbeat.decoder import RedBeatJSONEncoder
from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry, get_redis

from syncworker.worker.leader import Leadership

__all__ = ["SLEEPS_PER_LOCK", "Scheduler"]

logger = logging.getLogger(__name__)

# Beat wakes at least this many times per lock timeout: two renewals can fail (a slow Redis,
# a busy host) before the lock lapses.
SLEEPS_PER_LOCK = 3


class _Role(enum.Enum):
    STARTING = "starting"
    FIRING = "firing"
    STANDING_BY = "standing by"


class Scheduler(RedBeatScheduler):  # type: ignore[misc]
    """``beat_scheduler``: RedBeat's schedule, fired only under a lock checked at each write."""

    max_interval: float
    lock_timeout: float
    lock_key: str | None

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.max_interval = min(self.max_interval, self.lock_timeout / SLEEPS_PER_LOCK)
        # Always a lock (``redbeat_lock_key: null`` turns RedBeat's off): it is what makes
        # a second beat replica safe.
        key = self.lock_key or f"{app.redbeat_conf.key_prefix}:lock"
        self.leader = Leadership(get_redis(app), key, self.lock_timeout)
        # RedBeat's own lock handling (a blocking acquire when beat starts, an extend that
        # raises at each tick) runs only when lock_key is set: Leadership replaces it.
        self.lock_key = None
        self._role = _Role.STARTING
        self._installed_for: str | None = None
        self._fired: dict[str, datetime] = {}

    def setup_schedule(self) -> None:
        """Nothing when beat starts: the schedule is written by the beat that takes the lock
        (:meth:`_install`), so a standing-by beat, or one started while Redis is down,
        neither fails nor overwrites the firing beat's schedule."""

    def tick(self, min: Any = min, **kwargs: Any) -> float:
        try:
            return self._tick()
        except redis.RedisError as exc:
            logger.warning(
                "beat: Redis did not answer (%s); trying again in %.1f s", exc, self.max_interval
            )
            return float(self.max_interval)

    def _tick(self) -> float:
        if not self.leader.hold():
            self._stand_by()
            return float(self.max_interval)
        self._role = _Role.FIRING
        if self._installed_for != self.leader.token:  # taken now, or the install failed
            logger.info("beat: holding the lock %s: this beat fires", self.leader.key)
            self._install()
            self._installed_for = self.leader.token
        return float(super().tick())

    def _stand_by(self) -> None:
        if self._role is _Role.FIRING:
            logger.warning("beat: lost the lock %s; standing by", self.leader.key)
        elif self._role is _Role.STARTING:
            logger.info("beat: another beat holds the lock %s; standing by", self.leader.key)
        self._role = _Role.STANDING_BY
        self._fired.clear()

    def _install(self) -> None:
        """Write the configured schedule into Redis, each entry's last run the later of
        Redis's and this process's (see the module docstring)."""
        super().setup_schedule()  # through update_from_dict, for entries Redis lacks
        for name, fired in self._fired.items():  # entries Redis has, from an older snapshot
            try:
                entry = self.Entry.from_key(self.Entry.generate_key(self.app, name), app=self.app)
            except KeyError:  # no longer in the config
                continue
            if entry.last_run_at is None or entry.last_run_at < fired:
                entry.last_run_at = fired
                self._write(entry)

    def update_from_dict(self, dict_: dict[str, Any]) -> None:
        """RedBeat's, with an entry new to Redis starting from the last run this process
        sent rather than from now: after Redis restarted empty, a walk due meanwhile fires
        (once) instead of waiting a whole period."""
        remembered = {
            name: {**entry, "last_run_at": self._fired[name]}
            if isinstance(entry, dict) and name in self._fired
            else entry
            for name, entry in dict_.items()
        }
        super().update_from_dict(remembered)

    def maybe_due(self, entry: RedBeatSchedulerEntry, **kwargs: Any) -> float:
        is_due, next_time_to_run = entry.is_due()
        if is_due and self._claim(entry):
            logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
            try:
                self.apply_async(entry, advance=False, **kwargs)
            except Exception as exc:  # the broker refused past its publish retries
                logger.error(
                    "beat: could not send %s: %s; it fires again at its next due time",
                    entry.name,
                    exc,
                )
        return float(next_time_to_run)

    def _claim(self, entry: RedBeatSchedulerEntry) -> bool:
        """Advance ``entry`` to its next run in Redis while this beat holds the lock; False
        (and standing by) when it does not. Celery's own advance, without RedBeat's write,
        which does not look at the lock."""
        advanced = ScheduleEntry._next_instance(entry)
        if not self._write(advanced):
            logger.warning("beat: lost the lock before sending %s; not sent", entry.name)
            self._stand_by()
            return False
        self._fired[entry.name] = advanced.last_run_at
        return True

    def _write(self, entry: RedBeatSchedulerEntry) -> bool:
        meta = {"last_run_at": entry.last_run_at, "total_run_count": entry.total_run_count}
        encoded = json.dumps(meta, cls=RedBeatJSONEncoder)
        schedule_key = self.app.redbeat_conf.schedule_key
        return self.leader.write_if_held(entry.key, schedule_key, encoded, entry.score)

    def close(self) -> None:
        try:
            self.leader.release()
        except redis.RedisError as exc:
            logger.warning("beat: could not release the lock %s: %s", self.leader.key, exc)
        super().close()

    @property
    def info(self) -> str:
        lock = f"       . lock -> `{self.leader.key}` ({self.leader.timeout}s)"
        return f"{super().info}\n{lock}"
