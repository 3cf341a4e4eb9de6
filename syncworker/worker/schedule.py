"""Beat's schedule: one catalog walk per registry, on its ``pollInterval`` or ``schedule``.

A registry with neither is mirrored only when triggered (``syncworker trigger``) or on demand.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from celery.schedules import crontab

from syncworker.config import Config, RegistryConfig

__all__ = ["beat_schedule", "entry_name", "next_run", "registry_schedule"]


def entry_name(registry: str) -> str:
    """The beat entry of ``registry`` (RedBeat keeps it in Redis under this name)."""
    return f"syncworker.walk:{registry}"


def next_run(app: Any, registry: str) -> float | None:
    """When beat next fires ``registry``'s walk (Unix time), from RedBeat's entry in Redis;
    None when beat has not stored one (no schedule, or beat never ran)."""
    from redbeat.schedulers import RedBeatSchedulerEntry, ensure_conf

    key = f"{ensure_conf(app).key_prefix}{entry_name(registry)}"
    try:
        entry = RedBeatSchedulerEntry.from_key(key, app=app)
    except KeyError:
        return None
    return _due(entry.schedule, entry.last_run_at, entry.default_now())


def _due(schedule: Any, last_run_at: datetime | None, now: datetime) -> float:
    """The instant ``schedule`` fires after ``last_run_at`` (now when overdue or never run).
    Not RedBeat's ``due_at``: that adds the time left *as of now* to ``last_run_at``, so it
    is early by however long ago the last run was."""
    if last_run_at is None:
        return now.timestamp()
    if isinstance(schedule, crontab):
        start, delta, _ = schedule.remaining_delta(last_run_at, tz=schedule.tz)
        due = start + delta
    else:  # an interval (celery.schedules.schedule)
        due = schedule.maybe_make_aware(last_run_at) + schedule.run_every
    return float(max(due, now).timestamp())


def registry_schedule(registry: RegistryConfig) -> crontab | timedelta | None:
    """Cron wins over the interval when both are given: it is the more deliberate choice."""
    if registry.schedule:
        minute, hour, day_of_month, month, day_of_week = registry.schedule.split()
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month,
            day_of_week=day_of_week,
        )
    return registry.poll_interval


def _expires(schedule: crontab | timedelta) -> float | None:
    # A tick still queued when the next one fires is worthless (that walk would be a no-op
    # anyway); expiring it keeps the walk queue short when no worker listens for a while.
    if isinstance(schedule, timedelta):
        return max(schedule.total_seconds(), 1.0)
    return None


def beat_schedule(config: Config, task: str, queue: str) -> dict[str, dict[str, Any]]:
    """Celery's ``beat_schedule`` for ``config``: ``task(registry)`` on ``queue``."""
    entries: dict[str, dict[str, Any]] = {}
    for registry in config.registries:
        schedule = registry_schedule(registry)
        if schedule is None:
            continue
        options: dict[str, Any] = {"queue": queue}
        expires = _expires(schedule)
        if expires is not None:
            options["expires"] = expires
        entries[entry_name(registry.name)] = {
            "task": task,
            "schedule": schedule,
            "args": [registry.name],
            "options": options,
        }
    return entries
