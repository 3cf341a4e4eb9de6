"""The catalog walk's state in Redis, per registry: who is walking, the cursor, and what
each run fanned out (the walk's logic is ``syncworker/runs/catalogwalk.py``).

What the walk relies on: the cursor moves only by compare-and-set
(:meth:`CatalogWalks.advance_cursor`), so two deliveries of one page cannot both move it; a
repository is marked fanned out at most once per run (:meth:`CatalogWalks.mark_enqueued`);
:meth:`CatalogWalks.end_walk` clears cursor and walk marker in one step (prefer it to
``advance_cursor(..., None)``, which leaves a moment where the cursor reads as "start").
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from syncworker.coord.keys import RUN_RETENTION, RUN_TTL, WALK_TTL, Keys
from syncworker.coord.redisclient import LuaArg, Part, text, translated
from syncworker.coord.scripts import register

__all__ = ["DONE", "SENT", "CatalogWalks"]

# Field prefixes in the run's repos hash (keys.py): fanned out, and counted (lua/run_incr.lua).
SENT, DONE = "sent:", "done:"


def _flag(value: str | None) -> tuple[str, str]:
    """A nullable string as two Lua arguments: presence, value."""
    return ("0", "") if value is None else ("1", value)


class CatalogWalks(Part):
    """The catalog walk of each registry."""

    def __init__(self, client: redis.Redis, keys: Keys, where: str) -> None:
        super().__init__(client, keys, where)
        self._lua_begin = register(self._client, "walk_begin")
        self._lua_advance = register(self._client, "walk_advance")
        self._lua_mark = register(self._client, "walk_mark")
        self._lua_end = register(self._client, "walk_end")

    @translated
    def begin_walk(self, registry: str, run_id: str) -> bool:
        """Claim the registry's walk for ``run_id``; False if a walk is already in progress."""
        keys = [self._keys.walk(registry), self._keys.cursor(registry)]
        return bool(self._lua_begin(keys=keys, args=[run_id, int(WALK_TTL * 1000)]))

    @translated
    def current_walk(self, registry: str) -> str | None:
        """The run id of the walk in progress for ``registry``, if any."""
        return text(self._client.get(self._keys.walk(registry)))

    @translated
    def cursor(self, registry: str) -> str | None:
        """The last catalog entry whose page was fully enqueued; None at the start."""
        return text(self._client.get(self._keys.cursor(registry)))

    @translated
    def advance_cursor(self, registry: str, expected: str | None, new: str | None) -> bool:
        """Move the cursor from ``expected`` to ``new`` (None deletes it); False, changing
        nothing, if it no longer holds ``expected`` (another delivery moved it first)."""
        keys = [self._keys.cursor(registry), self._keys.walk(registry)]
        args: list[LuaArg] = [*_flag(expected), *_flag(new), int(WALK_TTL * 1000)]
        return bool(self._lua_advance(keys=keys, args=args))

    @translated
    def mark_enqueued(self, run_id: str, *repos: str) -> int:
        """Mark ``repos`` fanned out in ``run_id`` (one step for a whole page); how many were
        not marked before. Each of those also adds one to the run's ``repos_total``."""
        if not repos:
            return 0
        keys = list(self._keys.run_keys(run_id))
        return int(self._lua_mark(keys=keys, args=[int(RUN_TTL * 1000), *repos]))

    @translated
    def not_enqueued(self, run_id: str, repos: Sequence[str]) -> list[str]:
        """Those of ``repos`` not yet marked by :meth:`mark_enqueued` in ``run_id`` (one
        command for a whole page)."""
        if not repos:
            return []
        fields = [f"{SENT}{repo}" for repo in repos]
        marks = self._client.hmget(self._keys.run_repos(run_id), fields)
        return [repo for repo, mark in zip(repos, marks, strict=True) if mark is None]

    @translated
    def counted(self, run_id: str, repos: Sequence[str]) -> set[str]:
        """Those of ``repos`` already counted in ``run_id`` (one command for them all)."""
        if not repos:
            return set()
        marks = self._client.hmget(self._keys.run_repos(run_id), [f"{DONE}{r}" for r in repos])
        return {repo for repo, mark in zip(repos, marks, strict=True) if mark is not None}

    @translated
    def uncounted(self, run_id: str) -> list[str]:
        """Repositories fanned out in ``run_id`` and not yet counted done or failed (by
        ``incr(once_for=repo)``): in the queues, in progress, or lost with a message."""
        sent: set[str] = set()
        done: set[str] = set()
        for field, _ in self._client.hscan_iter(self._keys.run_repos(run_id), count=1000):
            name = str(text(field))
            if name.startswith(SENT):
                sent.add(name.removeprefix(SENT))
            else:
                done.add(name.removeprefix(DONE))
        return sorted(sent - done)

    @translated
    def note_cursor(self, run_id: str, previous: str | None, cursor: str) -> bool:
        """Record that ``run_id``'s walk moved from ``previous`` to ``cursor``; False if it
        reached ``cursor`` before from elsewhere (the catalog's pages loop). The same move
        again (a redelivered page) is True."""
        key = self._keys.run_cursors(run_id)
        if self._client.hsetnx(key, cursor, previous or ""):
            ttl = self._client.pttl(self._keys.run(run_id))
            self._client.pexpire(key, ttl if ttl > 0 else int(RUN_TTL * 1000))
            return True
        return text(self._client.hget(key, cursor)) == (previous or "")

    @translated
    def end_walk(self, registry: str, run_id: str) -> bool:
        """The catalog is done: clear walk marker and cursor if ``run_id`` still owns them
        (True), and let the run finish once its last repository is counted."""
        keys = [
            *self._keys.run_keys(run_id),
            self._keys.run_stats(),
            self._keys.walk(registry),
            self._keys.cursor(registry),
        ]
        args: list[LuaArg] = [run_id, time.time(), int(RUN_RETENTION * 1000)]
        return bool(self._lua_end(keys=keys, args=args))
