"""Catalog walk state per registry: who is walking, and the cursor (issue 3, ``walk_catalog``).

One page per task: the task reads the cursor, lists the page after it, fans out ``sync_repo``
(each repo at most once per run: :meth:`WalkMixin.mark_enqueued`), then moves the cursor with
a compare-and-set, so a duplicate delivery of the same page cannot move it twice and a walk
whose worker died resumes from the last page that was fully enqueued. At the end of the
catalog, :meth:`WalkMixin.end_walk` clears cursor and walk marker in one step (prefer it to
``advance_cursor(..., None)``, which leaves a moment where the cursor reads as "start").
"""

from __future__ import annotations

import time

from syncworker.coord.backend import Backend, LuaArg, text, translated
from syncworker.coord.keys import RUN_RETENTION, RUN_TTL, WALK_TTL
from syncworker.coord.runs import LUA_RUN_PRELUDE

__all__ = ["WalkMixin"]

# KEYS: walk, cursor. ARGV: run id, ttl_ms. A new walk starts from the top of the catalog.
_LUA_BEGIN = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('del', KEYS[2])
  return 1
end
return 0
"""

# KEYS: cursor, walk. ARGV: has_expected, expected, has_new, new, ttl_ms.
# A missing key stands for "no cursor" (start of the catalog, or its end).
_LUA_ADVANCE = """
local current = redis.call('get', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[3] == '1' then
  redis.call('set', KEYS[1], ARGV[4], 'PX', ARGV[5])
else
  redis.call('del', KEYS[1])
end
redis.call('pexpire', KEYS[2], ARGV[5])
return 1
"""

# KEYS: run, enqueued, counters. ARGV: repo, ttl_ms if the run has none. The set lives as long as
# its run.
_LUA_MARK = """
local added = redis.call('sadd', KEYS[2], ARGV[1])
-- counted in the same step, so a crash cannot leave a repo marked but not in the total
if added == 1 and redis.call('exists', KEYS[1]) == 1 then
  redis.call('hincrby', KEYS[3], 'repos_total', 1)
end
local ttl = redis.call('pttl', KEYS[1])
if ttl <= 0 then ttl = ARGV[2] end
redis.call('pexpire', KEYS[2], ttl)
return added
"""

# KEYS: the run's keys, walk, cursor. ARGV: run id, now, retention_ms.
# The run is marked walked even if the marker was lost, so it can still complete.
_LUA_END = (
    LUA_RUN_PRELUDE
    + """
local walk, cursor = KEYS[RUN_KEYS + 1], KEYS[RUN_KEYS + 2]
local owned = redis.call('get', walk) == ARGV[1]
if owned then redis.call('del', walk, cursor) end
if redis.call('exists', KEYS[1]) == 1 then
  redis.call('hset', KEYS[1], 'walked', '1')
  complete_if_done(ARGV[2], ARGV[3])
end
if owned then return 1 end
return 0
"""
)


def _flag(value: str | None) -> tuple[str, str]:
    """A nullable string as two Lua arguments: presence, value."""
    return ("0", "") if value is None else ("1", value)


class WalkMixin(Backend):
    """The catalog walk of each registry."""

    def _register_walk(self) -> None:
        register = self._client.register_script
        self._lua_begin = register(_LUA_BEGIN)
        self._lua_advance = register(_LUA_ADVANCE)
        self._lua_mark = register(_LUA_MARK)
        self._lua_end = register(_LUA_END)

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
    def mark_enqueued(self, run_id: str, repo: str) -> bool:
        """True the first time ``repo`` is fanned out in ``run_id``: at most one sync_repo.
        That first time also adds one to the run's ``repos_total``."""
        keys = [
            self._keys.run(run_id),
            self._keys.run_enqueued(run_id),
            self._keys.run_counters(run_id),
        ]
        return bool(self._lua_mark(keys=keys, args=[repo, int(RUN_TTL * 1000)]))

    @translated
    def was_enqueued(self, run_id: str, repo: str) -> bool:
        """Whether ``repo`` was already marked by :meth:`mark_enqueued` in ``run_id``."""
        return bool(self._client.sismember(self._keys.run_enqueued(run_id), repo))

    @translated
    def uncounted(self, run_id: str) -> list[str]:
        """Repositories fanned out in ``run_id`` and not yet counted done or failed (by
        ``incr(once_for=repo)``): in the queues, in progress, or lost with a message."""
        keys = [self._keys.run_enqueued(run_id), self._keys.run_counted(run_id)]
        found = self._client.sdiff(keys)
        return sorted(str(text(repo)) for repo in found)

    @translated
    def end_walk(self, registry: str, run_id: str) -> bool:
        """The catalog is done: clear walk marker and cursor if ``run_id`` still owns them
        (True), and let the run finish once its last repository is counted."""
        keys = [
            *self._keys.run_keys(run_id),
            self._keys.walk(registry),
            self._keys.cursor(registry),
        ]
        args: list[LuaArg] = [run_id, time.time(), int(RUN_RETENTION * 1000)]
        return bool(self._lua_end(keys=keys, args=args))
