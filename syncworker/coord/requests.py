"""How each request the HTTP API sent ended: ``queued`` → ``running`` → ``done`` or ``failed``
(or ``deferred`` on the way: an upstream's pull budget held it back, and it is sent again
for when the budget refills; its result says when).

The API opens a request (``{p}:request:{task id}``) before it sends the task, so whichever
replica is asked later can answer; the worker that runs the task moves it along. Only an
open request is moved, and an ended one never again: a task nobody asked about through
the API (a walk's repository, a ``trigger``) writes nothing, and a late duplicate delivery
cannot turn ``done`` back into ``running``. Each change re-arms REQUEST_TTL, so a request
waiting behind a long queue stays readable while it waits.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from syncworker.coord.keys import REQUEST_TTL, Keys
from syncworker.coord.redisclient import LuaArg, Part, text, translated
from syncworker.coord.scripts import register

__all__ = [
    "DEFERRED",
    "DONE",
    "FAILED",
    "QUEUED",
    "REQUEST_STATES",
    "RUNNING",
    "RequestStatus",
    "Requests",
]

QUEUED, RUNNING, DONE, FAILED, DEFERRED = "queued", "running", "done", "failed", "deferred"
REQUEST_STATES = (QUEUED, RUNNING, DEFERRED, DONE, FAILED)
_ENDED = frozenset({DONE, FAILED})


@dataclass(frozen=True, slots=True)
class RequestStatus:
    """One request as its caller reads it. ``result``: the task's own result once it ended
    (``copied``, ``skipped``, ``failures`` with their causes, ...)."""

    id: str
    kind: str
    registry: str
    repo: str
    reference: str | None
    state: str
    created: float
    started: float | None = None
    finished: float | None = None
    result: dict[str, Any] | None = None

    @property
    def ended(self) -> bool:
        return self.state in _ENDED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Requests(Part):
    """Open, move along and read requests of the API."""

    def __init__(self, client: redis.Redis, keys: Keys, where: str) -> None:
        super().__init__(client, keys, where)
        self._lua_move = register(self._client, "request_move")

    @translated
    def open(
        self, task_id: str, kind: str, registry: str, repo: str, reference: str | None
    ) -> None:
        """Record a request as queued, before its task is sent."""
        key = self._keys.request(task_id)
        fields: list[LuaArg] = ["kind", kind, "registry", registry, "repo", repo,
                                "reference", reference or "", "state", QUEUED,
                                "created", time.time()]  # fmt: skip
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(key, items=fields)
            pipe.pexpire(key, int(REQUEST_TTL * 1000))
            pipe.execute()

    @translated
    def forget(self, task_id: str) -> None:
        """Drop a request whose task could not be sent (its caller got an error, no id)."""
        self._client.delete(self._keys.request(task_id))

    @translated
    def move(self, task_id: str, state: str, result: dict[str, Any] | None = None) -> bool:
        """Move an open request that has not ended to ``state`` (``running``, or ``done`` /
        ``failed`` with the task's ``result``); False if there is no such request, or it
        had ended."""
        if state not in (RUNNING, DEFERRED, *_ENDED):
            raise ValueError(f"not a state a request moves to: {state!r}")
        stamp = "started" if state == RUNNING else "finished"
        payload = "" if result is None else json.dumps(result)
        args: list[LuaArg] = [state, stamp, time.time(), int(REQUEST_TTL * 1000), payload]
        return bool(self._lua_move(keys=[self._keys.request(task_id)], args=args))

    @translated
    def status(self, task_id: str) -> RequestStatus | None:
        """The request, or None if there is none (never opened, or expired)."""
        raw = self._client.hgetall(self._keys.request(task_id))
        if not raw:
            return None
        fields = {str(text(k)): str(text(v)) for k, v in raw.items()}
        return RequestStatus(
            id=task_id,
            kind=fields.get("kind", ""),
            registry=fields.get("registry", ""),
            repo=fields.get("repo", ""),
            reference=fields.get("reference") or None,
            state=fields.get("state", QUEUED),
            created=float(fields.get("created") or 0),
            started=_time(fields.get("started")),
            finished=_time(fields.get("finished")),
            result=json.loads(fields["result"]) if fields.get("result") else None,
        )


def _time(value: str | None) -> float | None:
    return float(value) if value else None
