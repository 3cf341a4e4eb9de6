"""Pull budgets per upstream identity, shared by the cluster (the registry client's
``PullBudget``): one Lua call before each manifest GET (``lua/budget_take.lua``) and one
per answer that declares the budget (``lua/budget_note.lua``), on Redis's clock. An
upstream that declares none costs one call per process, for its first manifest answer.
The manifests a budget was spent on (the registry client's ``PaidManifests``) are kept
beside it: one HSET and EXPIRE per manifest GET, one HMGET and EXPIRE per GET by digest.
"""

from __future__ import annotations

import redis

from syncworker.coord.keys import Keys
from syncworker.coord.redisclient import LuaArg, Part, text, translated
from syncworker.coord.scripts import register

__all__ = [
    "CLOCK_SKEW_MS",
    "FLIGHT_LEASE",
    "RedisPaidManifests",
    "RedisPullBudget",
    "RedisPullBudgets",
]

# A manifest GET's pull stays counted as in flight until its answer, or this lease if its
# worker died mid-request: a manifest answer takes seconds, never a minute.
FLIGHT_LEASE = 60.0
# How far a worker's clock (a request's sending time) may be ahead of Redis's: a higher
# count is believed only from a request sent this long after the count last went down.
CLOCK_SKEW_MS = 1000


class RedisPullBudgets(Part):
    """Makes the budget of each upstream identity; the scripts are registered once."""

    def __init__(self, client: redis.Redis, keys: Keys, where: str) -> None:
        super().__init__(client, keys, where)
        self.take_script = register(client, "budget_take")
        self.note_script = register(client, "budget_note")

    def pull_budget(self, registry: str, identity: str) -> RedisPullBudget:
        return RedisPullBudget(self, registry, identity)

    def paid_manifests(self, registry: str) -> RedisPaidManifests:
        return RedisPaidManifests(self, registry)


class RedisPullBudget(Part):
    """The pull budget of ``identity`` on upstream ``registry``, for every worker."""

    def __init__(self, budgets: RedisPullBudgets, registry: str, identity: str) -> None:
        super().__init__(budgets._client, budgets._keys, budgets._where)
        self._budgets = budgets
        k = self._keys
        self._names = [k.budget(registry, identity), k.budget_flight(registry, identity)]

    def __repr__(self) -> str:
        return f"RedisPullBudget({self._names[0]!r})"

    @translated
    def take(self, token: str, reserve: int) -> float:
        args: list[LuaArg] = [token, reserve, int(FLIGHT_LEASE * 1000)]
        answer = int(self._budgets.take_script(keys=self._names, args=args))
        return answer / 1000.0 if answer > 0 else float(answer)

    def note(self, token: str | None, seen: tuple[int, int, int], sent_at: float) -> None:
        limit, remaining, window = seen
        self._note(token, "seen", limit, remaining, window, int(sent_at * 1000))

    def unlimited(self, token: str | None) -> None:
        self._note(token, "none")

    def forgo(self, token: str) -> None:
        self._note(token, "forgo")

    @translated
    def _note(self, token: str | None, what: str, *numbers: int) -> None:
        args: list[LuaArg] = [token or "", what, *(numbers or (0, 0, 0, 0)), CLOCK_SKEW_MS]
        self._budgets.note_script(keys=self._names, args=args)


class RedisPaidManifests(Part):
    """The manifests upstream ``registry``'s pull budget was spent on, for every worker."""

    def __init__(self, budgets: RedisPullBudgets, registry: str) -> None:
        super().__init__(budgets._client, budgets._keys, budgets._where)
        self._registry = registry

    @translated
    def find(self, repo: str, digest: str, seconds: float) -> tuple[bytes, str | None] | None:
        key = self._keys.paid(self._registry, repo, digest)
        # One round trip; the TTL of a key that is gone is not set.
        with self._client.pipeline(transaction=False) as pipe:
            pipe.hmget(key, ["raw", "type"])
            if seconds:
                pipe.expire(key, max(1, int(seconds)))
            (raw, media_type), *_ = pipe.execute()
        if raw is None:
            return None
        return (raw if isinstance(raw, bytes) else raw.encode(), text(media_type) or None)

    @translated
    def keep(self, repo: str, digest: str, kept: tuple[bytes, str | None], seconds: float) -> None:
        key = self._keys.paid(self._registry, repo, digest)
        raw, media_type = kept
        with self._client.pipeline() as pipe:
            pipe.hset(key, mapping={"raw": raw, "type": media_type or ""})
            pipe.expire(key, max(1, int(seconds)))
            pipe.execute()
